"""The ``fanout`` scenario: one channel, W server worker processes, C
subscribed WebSocket clients, one publisher.

Processes (each started as ``python -m wsfast.benchmark.worker SPEC``):

* **W server workers** on one port (``SO_REUSEPORT``: each binds it, the
  kernel spreads the connections), each as its library's documentation
  would write it: a connection on ``/sub`` subscribes to the channel, a
  connection on ``/pub`` publishes every message it receives. One Redis
  (``redis-server`` on a free loopback port, no persistence, started for
  the run and stopped by PID) carries messages between workers. The memory
  hub does not cross processes: it runs with one worker.
* **Client processes**, ``clients_per_process`` connections each, each
  process binding its connections to its own source address (127.0.0.2,
  127.0.0.3...) so that ephemeral ports do not run out. No WebSocket
  library: a real handshake, then bytes counted. Every message is 64 B and
  every frame 66 B, so a connection's k-th message has arrived once it has
  counted 66 k bytes; the last frame of a read is checked (its kind and
  sequence number) whenever a read ends on a frame boundary.
* **A publisher**: one WebSocket connection to ``/pub`` (any worker),
  sending messages that carry their sequence number and the
  ``time.monotonic_ns()`` of their sending (CLOCK_MONOTONIC: one clock for
  every process of a Linux machine). When every connection of a client
  process has a message, the process tells the publisher in a UDP datagram
  (the sequence number, when the first and the last of its connections had
  it); once every client process has, the message is delivered.

Phases: *sync* (messages of kind ``S`` every 50 ms until every connection
has one, then one ``E``: the connections count from there), *fixed rate*
(``deliveries_per_s / clients`` messages per second) and *saturation* (a
window of messages in flight: the next is published when the oldest has
reached every client). For each phase: deliveries counted by the clients
(every connection must count exactly every message: otherwise the run
fails), deliveries per second, publish-to-last-delivery latency per
message (p50, p99), CPU time of the server processes and of redis-server
(``/proc/PID/stat``) per delivery. And the servers' RSS growth per
subscribed connection.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional

from ._common import (
    accept_key,
    frame,
    import_module,
    import_optional,
    loop_factory,
    percentile,
    proc_cpu_seconds,
    proc_rss_bytes,
    raise_fd_limit,
    read_101,
    reply,
    summarize,
    upgrade_request,
    wsfast_description,
)

if TYPE_CHECKING:
    from .runner import Suite

__all__ = ["IMPLS", "LABELS", "missing", "run_scenario", "summarize_point", "markdown", "chart", "main_role"]

CHANNEL = "fanout"
PAYLOAD = 64
FRAME = PAYLOAD + 2  # a server frame of a 64 B message: two header bytes
SYNC, END, DATA = ord("S"), ord("E"), ord("D")
_DATAGRAM = struct.Struct("<qqq")  # sequence number (-1: every connection synced), first, last (monotonic ns)
SYNC_INTERVAL = 0.05

IMPLS = ("raw-redis", "wsfast-memory", "wsfast-redis", "wsfast-streams", "websockets-redis", "broadcaster")
LABELS = {
    "raw-redis": "ceiling: frame once, write to each (Redis Pub/Sub)",
    "wsfast-memory": "wsfast + memory hub (1 worker)",
    "wsfast-redis": "wsfast + Redis Pub/Sub",
    "wsfast-streams": "wsfast + Redis Streams",
    "websockets-redis": "websockets + redis-py Pub/Sub",
    "broadcaster": "broadcaster (Redis) on Starlette/uvicorn",
}
LIBRARY = {
    "raw-redis": "wsfast",
    "wsfast-memory": "wsfast",
    "wsfast-redis": "wsfast",
    "wsfast-streams": "wsfast",
    "websockets-redis": "websockets",
    "broadcaster": "broadcaster",
}
_NEEDS = {  # import names besides the library itself
    "raw-redis": ("redis",),
    "wsfast-redis": ("redis",),
    "wsfast-streams": ("redis",),
    "websockets-redis": ("websockets", "redis"),
    "broadcaster": ("broadcaster", "starlette", "uvicorn", "redis"),
}
PEERS = ("websockets-redis", "broadcaster")


def message(kind: int, seq: int = 0, sent: int = 0) -> bytes:
    """A 64 B message: its kind, sequence number and sending time in hex
    (ASCII, so that a library that turns messages into text keeps them)."""
    head = b"%c%016x%016x" % (kind, seq, sent)
    return head + b"." * (PAYLOAD - len(head))


def uses_redis(impl: str) -> bool:
    return impl != "wsfast-memory"


def missing(impl: str) -> Optional[str]:
    """Why ``impl`` cannot run here (``None``: it can)."""
    import importlib.util

    for name in _NEEDS.get(impl, ()):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"{name} not installed"
    if uses_redis(impl) and shutil.which("redis-server") is None:
        return "no redis-server on the PATH"
    return None


# ================================================================ in the worker processes


def main_role(spec: dict[str, Any]) -> int:
    """The body of a ``fanout-server``, ``fanout-clients`` or
    ``fanout-publisher`` process: set up, answer ready, then run commands
    read from standard input while the event loop keeps running."""
    loop = loop_factory(spec["loop"])()
    asyncio.set_event_loop(loop)
    role = spec["role"]
    setup = {"fanout-server": _server_setup, "fanout-clients": _clients_setup, "fanout-publisher": _publisher_setup}
    try:
        loop.run_until_complete(_command_loop(setup[role], spec))
    finally:
        loop.close()
    return 0


Handlers = dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]


async def _command_loop(
    setup: Callable[[dict[str, Any]], Awaitable[tuple[dict[str, Any], Handlers]]], spec: dict[str, Any]
) -> None:
    loop = asyncio.get_running_loop()
    fd_limit = raise_fd_limit()
    try:
        info, handlers = await setup(spec)
    except Exception as exc:
        print(traceback.format_exc(), file=sys.stderr, flush=True)
        reply({"error": f"{type(exc).__name__}: {exc}"})
        return
    reply({"ready": True, "pid": os.getpid(), "fd_limit": fd_limit, **info})
    lines: asyncio.Queue[Optional[str]] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, daemon=True).start()
    try:
        while True:
            line = await lines.get()
            if line is None:
                break
            if not line.strip():
                continue
            cmd = json.loads(line)
            try:
                result = await handlers[cmd["op"]](cmd)
            except Exception as exc:
                print(traceback.format_exc(), file=sys.stderr, flush=True)
                reply({"error": f"{type(exc).__name__}: {exc}".strip()})
            else:
                reply({"ok": True, **result})
    finally:
        close = handlers.get("close")
        if close is not None:
            try:
                await asyncio.wait_for(close({}), 10)
            except Exception:
                pass


# ---------------------------------------------------------------- servers


def _reuse_port_socket(port: int, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


async def _server_setup(spec: dict[str, Any]) -> tuple[dict[str, Any], Handlers]:
    impl, port, redis_url = spec["impl"], spec["port"], spec.get("redis_url", "")
    starts = {
        "wsfast-memory": _wsfast_hub,
        "wsfast-redis": _wsfast_hub,
        "wsfast-streams": _wsfast_hub,
        "websockets-redis": _websockets_redis,
        "broadcaster": _broadcaster,
        "raw-redis": _raw_redis,
    }
    description, stats, close = await starts[impl](impl, port, redis_url, spec.get("backlog", 4096))

    async def get_stats(cmd: dict[str, Any]) -> dict[str, Any]:
        return {"stats": stats(), "rss": proc_rss_bytes(os.getpid())}

    return {"description": description}, {"stats": get_stats, "close": close}


async def _wsfast_hub(impl: str, port: int, redis_url: str, backlog: int) -> tuple[str, Any, Any]:
    from dataclasses import asdict

    from ..asyncio import WebSocket, serve
    from ..hub import Hub

    url = {
        "wsfast-memory": "memory://",
        "wsfast-redis": f"redis://{redis_url}/0",
        "wsfast-streams": f"redis+streams://{redis_url}/0?maxlen=10000",
    }[impl]
    hub = Hub(url)
    await hub.start()

    async def subscriber(ws: WebSocket) -> None:
        await hub.subscribe(ws, CHANNEL)
        await ws.wait_closed()

    async def publisher(ws: WebSocket) -> None:
        async for data in ws:
            await hub.publish(CHANNEL, data)

    server = await serve(
        {"/sub": subscriber, "/pub": publisher}, "127.0.0.1", port, reuse_port=True, backlog=backlog, ping_interval=None
    )

    async def close(cmd: dict[str, Any]) -> dict[str, Any]:
        server.close()
        await hub.close()
        return {}

    scheme = url.split("://")[0]
    description = wsfast_description(f"serve(reuse_port=True), Hub({scheme}://...)") + ", ping_interval=None"
    return description, lambda: asdict(hub.stats), close


async def _raw_redis(impl: str, port: int, redis_url: str, backlog: int) -> tuple[str, Any, Any]:
    """The ceiling: no WebSocket library. A minimal handshake, redis-py's
    PubSub, and each message framed once and written to every subscriber's
    transport (the event loop's): what any implementation pays at least."""
    aioredis = import_module("redis.asyncio")
    redis = aioredis.Redis.from_url(f"redis://{redis_url}/0")
    subscribers: set[Any] = set()
    pubsub = redis.pubsub()
    await pubsub.subscribe(CHANNEL)
    loop = asyncio.get_running_loop()
    publishing: asyncio.Queue[bytes] = asyncio.Queue()

    async def relay() -> None:
        async for item in pubsub.listen():
            if item["type"] == "message":
                data = b"\x82" + bytes((len(item["data"]),)) + item["data"]
                for transport in subscribers:
                    transport.write(data)

    async def publish() -> None:
        while True:
            await redis.publish(CHANNEL, await publishing.get())

    class Connection(asyncio.Protocol):
        def __init__(self) -> None:
            self.head = b""
            self.publisher = False
            self.transport: Any = None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            if self.publisher:  # masked frames of 64 B: 2 + 4 + 64 bytes each
                self.head += data
                while len(self.head) >= 70:
                    key, body = self.head[2:6], self.head[6:70]
                    self.head = self.head[70:]
                    mask = int.from_bytes(key * 16, "big")
                    publishing.put_nowait((int.from_bytes(body, "big") ^ mask).to_bytes(64, "big"))
                return
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.head[:end].split(b"\r\n")
            self.head = self.head[end + 4 :]
            key = next(
                line.split(b":", 1)[1].strip() for line in lines if line.lower().startswith(b"sec-websocket-key:")
            )
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
            )
            if lines[0].split()[1] == b"/pub":
                self.publisher = True
            else:
                subscribers.add(self.transport)

        def connection_lost(self, exc: Optional[Exception]) -> None:
            subscribers.discard(self.transport)

    tasks = [loop.create_task(relay()), loop.create_task(publish())]
    server = await loop.create_server(Connection, "127.0.0.1", port, reuse_port=True, backlog=backlog)

    async def close(cmd: dict[str, Any]) -> dict[str, Any]:
        server.close()
        for task in tasks:
            task.cancel()
        await redis.aclose()
        return {}

    return (
        "ceiling: asyncio.Protocol, no WebSocket library; redis-py asyncio PubSub; transport.write per subscriber",
        (lambda: {}),
        close,
    )


async def _websockets_redis(impl: str, port: int, redis_url: str, backlog: int) -> tuple[str, Any, Any]:
    """websockets' deployment docs: each worker subscribes to Redis and
    broadcasts what it receives to its own clients."""
    websockets = import_optional("websockets")
    server_module = import_module("websockets.asyncio.server")
    aioredis = import_module("redis.asyncio")
    redis_module = import_module("redis")
    redis = aioredis.Redis.from_url(f"redis://{redis_url}/0")
    clients: set[Any] = set()
    pubsub = redis.pubsub()
    await pubsub.subscribe(CHANNEL)

    async def relay() -> None:
        async for item in pubsub.listen():
            if item["type"] == "message":
                server_module.broadcast(clients, item["data"])

    relaying = asyncio.get_running_loop().create_task(relay())

    async def handler(ws: Any) -> None:
        if ws.request.path == "/pub":
            async for data in ws:
                await redis.publish(CHANNEL, data)
            return
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    server = await server_module.serve(handler, "127.0.0.1", port, reuse_port=True, backlog=backlog, ping_interval=None)

    async def close(cmd: dict[str, Any]) -> dict[str, Any]:
        server.close()
        relaying.cancel()
        await redis.aclose()
        return {}

    description = (
        f"websockets {websockets.__version__} (asyncio.server.serve(reuse_port=True), websockets.broadcast),"
        f" redis-py {redis_module.__version__} asyncio PubSub, ping_interval=None"
    )
    return description, lambda: {}, close


async def _broadcaster(impl: str, port: int, redis_url: str, backlog: int) -> tuple[str, Any, Any]:
    """encode/broadcaster's Redis backend on Starlette, served by uvicorn
    (its defaults, keepalive pings off)."""
    import contextlib
    import importlib.metadata as metadata

    broadcaster = import_module("broadcaster")
    starlette_apps = import_module("starlette.applications")
    routing = import_module("starlette.routing")
    uvicorn = import_module("uvicorn")
    broadcast = broadcaster.Broadcast(f"redis://{redis_url}/0")

    async def subscriber(ws: Any) -> None:
        await ws.accept()
        async with broadcast.subscribe(CHANNEL) as events:
            async for event in events:
                await ws.send_text(event.message)

    async def publisher(ws: Any) -> None:
        await ws.accept()
        while True:
            item = await ws.receive()
            if item["type"] == "websocket.disconnect":
                return
            await broadcast.publish(CHANNEL, item.get("bytes") or item.get("text"))

    async def keep() -> None:
        async with broadcast.subscribe(CHANNEL) as events:
            async for _ in events:
                pass

    rearmed: list[bool] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        await broadcast.connect()
        # broadcaster replaces (does not add to) a channel's subscribers when
        # its first SUBSCRIBE returns: clients that subscribe meanwhile never
        # get a message. A subscriber of the process's own, then a settle
        # time, before any client comes.
        keeper = asyncio.get_running_loop().create_task(keep())
        await asyncio.sleep(0.3)
        # And its Redis listener starts when the first SUBSCRIBE is sent,
        # before redis-py records it: redis-py's listen() then ends at once
        # (nothing subscribed) and broadcaster waits for a next "first"
        # subscription, so nothing is ever delivered. Re-armed here.
        ready = getattr(broadcast._backend, "_ready", None)
        if ready is not None and not ready.is_set():
            ready.set()
            rearmed.append(True)
        await asyncio.sleep(0.2)
        yield
        keeper.cancel()
        await broadcast.disconnect()

    app = starlette_apps.Starlette(
        routes=[routing.WebSocketRoute("/sub", subscriber), routing.WebSocketRoute("/pub", publisher)],
        lifespan=lifespan,
    )
    config = uvicorn.Config(
        app,
        lifespan="on",
        ws_ping_interval=None,
        log_level="warning",
        access_log=False,
        backlog=backlog,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # the runner stops it through its standard input
    sock = _reuse_port_socket(port, backlog)
    serving = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 20
    while not server.started:
        if serving.done():
            serving.result()
            raise RuntimeError("uvicorn stopped while starting")
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 20 s")
        await asyncio.sleep(0.02)

    async def close(cmd: dict[str, Any]) -> dict[str, Any]:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        return {}

    ws_class = getattr(config, "ws_protocol_class", None)
    ws_name = f"{ws_class.__module__}.{ws_class.__name__}" if ws_class is not None else "auto"
    description = (
        f"broadcaster {metadata.version('broadcaster')} (redis://), starlette {metadata.version('starlette')},"
        f" uvicorn {uvicorn.__version__} (ws={ws_name}, ws_ping_interval=None), one subscriber per worker"
        " opened at startup (broadcaster's first-SUBSCRIBE race)"
        + (
            ", its Redis listener re-armed after that SUBSCRIBE (it had stopped: redis-py's listen() ends when"
            " nothing is subscribed yet)"
            if rearmed
            else ""
        )
    )
    return description, lambda: {}, close


# ---------------------------------------------------------------- clients

_BUFFER = memoryview(bytearray(262144))
_HANDSHAKE, _SYNCING, _COUNTING, _DONE = range(4)


class _Subscriber(asyncio.BufferedProtocol):
    """One subscribed connection: the handshake, the sync messages parsed
    one by one, then bytes counted."""

    __slots__ = ("owner", "transport", "state", "acc", "got", "count", "synced", "handshake")

    def __init__(self, owner: _Clients) -> None:
        self.owner = owner
        self.transport: Any = None
        self.state = _HANDSHAKE
        self.acc = bytearray()
        self.got = 0  # bytes counted since the end of the sync
        self.count = 0  # messages complete
        self.synced = False
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.owner.request)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        if self.state == _COUNTING:
            got = self.got + nbytes
            new = got // FRAME
            if new != self.count:
                self.owner.arrived(self.count, new, time.monotonic_ns())
                self.count = new
                if got == new * FRAME and nbytes >= FRAME:
                    self.owner.check(_BUFFER[nbytes - FRAME : nbytes], new - 1)
            self.got = got
            return
        self.acc += _BUFFER[:nbytes]
        try:
            self._parse()
        except Exception as exc:
            self.owner.fail(f"{type(exc).__name__}: {exc}")
            if not self.handshake.done():
                self.handshake.set_exception(exc)

    def _parse(self) -> None:
        acc = self.acc
        if self.state == _HANDSHAKE:
            if read_101(acc) is None:
                return
            self.state = _SYNCING
            self.handshake.set_result(None)
        pos = 0
        while self.state == _SYNCING and len(acc) - pos >= FRAME:
            first, length, kind = acc[pos], acc[pos + 1], acc[pos + 2]
            if first not in (0x81, 0x82) or length != PAYLOAD:
                raise AssertionError(f"unexpected frame (bytes {first:#x} {length:#x}) before the count")
            pos += FRAME
            if kind == SYNC:
                if not self.synced:
                    self.synced = True
                    self.owner.synced_one()
            elif kind == END and self.synced:
                self.state = _COUNTING
            else:
                raise AssertionError(f"unexpected message of kind {chr(kind)!r} before the count")
        del acc[:pos]
        if self.state == _COUNTING and acc:
            rest, self.acc = bytes(acc), bytearray()
            self.got = len(rest)
            new = self.got // FRAME
            if new:
                self.owner.arrived(0, new, time.monotonic_ns())
                self.count = new
                self.owner.check(memoryview(rest)[(new - 1) * FRAME : new * FRAME], new - 1)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self.state != _DONE:
            self.owner.fail("a connection was closed by the server")
            if not self.handshake.done():
                self.handshake.set_exception(ConnectionError("connection closed during the handshake"))
        self.state = _DONE


class _Clients:
    """The connections of one client process and their shared counts."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.source = spec["source"]
        self.port = spec["port"]
        self.request = upgrade_request("127.0.0.1", self.port, "/sub")
        size = spec.get("max_messages", 1 << 17)
        self.hits = [0] * size
        self.first = [0] * size
        self.conns: list[_Subscriber] = []
        self.total = 0
        self.synced = 0
        self.error: Optional[str] = None
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.connect(("127.0.0.1", spec["udp_port"]))

    def arrived(self, old: int, new: int, now: int) -> None:
        """Messages ``old`` to ``new - 1`` reached one more connection."""
        hits = self.hits
        if new > len(hits):
            self.fail(f"more than {len(hits)} messages")
            return
        total = self.total
        for k in range(old, new):
            h = hits[k] + 1
            hits[k] = h
            if h == 1:
                self.first[k] = now
            if h == total:
                self.udp.send(_DATAGRAM.pack(k, self.first[k], now))

    def check(self, last: Any, seq: int) -> None:
        """The last frame of a read: a data message numbered ``seq``."""
        if last[0] not in (0x81, 0x82) or last[1] != PAYLOAD or last[2] != DATA or int(bytes(last[3:19]), 16) != seq:
            self.fail(f"message {seq} is not where it should be: lost, repeated or reordered messages")

    def synced_one(self) -> None:
        self.synced += 1
        if self.synced == self.total:
            self.udp.send(_DATAGRAM.pack(-1, 0, 0))

    def fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason

    async def open(self, cmd: dict[str, Any]) -> dict[str, Any]:
        count = cmd["count"]
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if count + 64 > soft:
            raise RuntimeError(f"{count} connections need {count + 64} open files; this process may open {soft}")
        self.total = count
        loop = asyncio.get_running_loop()
        batch = cmd.get("batch", 100)
        started = time.monotonic()
        for first in range(0, count, batch):
            made = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        loop.create_connection(
                            lambda: _Subscriber(self), "127.0.0.1", self.port, local_addr=(self.source, 0)
                        )
                        for _ in range(first, min(count, first + batch))
                    )
                ),
                cmd.get("timeout", 60),
            )
            opened = [protocol for _, protocol in made]
            self.conns.extend(opened)
            await asyncio.wait_for(asyncio.gather(*(c.handshake for c in opened)), cmd.get("timeout", 60))
        return {"opened": len(self.conns), "seconds": time.monotonic() - started}

    async def collect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        counts = [c.count for c in self.conns]
        return {
            "frames": sum(counts),
            "min": min(counts) if counts else 0,
            "max": max(counts) if counts else 0,
            "partial": sum(1 for c in self.conns if c.got != c.count * FRAME),
            "failure": self.error,
        }

    async def close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        for conn in self.conns:
            conn.state = _DONE
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0.1)
        for conn in self.conns:
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.abort()
        self.conns = []
        return {}


async def _clients_setup(spec: dict[str, Any]) -> tuple[dict[str, Any], Handlers]:
    clients = _Clients(spec)
    return {"description": "the benchmark's subscribing clients"}, {
        "open": clients.open,
        "collect": clients.collect,
        "close": clients.close,
    }


# ---------------------------------------------------------------- publisher


class _Handshake(asyncio.Protocol):
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.acc = b""
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return  # the publishing connection receives nothing but a close
        self.acc += data
        if b"\r\n\r\n" in self.acc:
            if self.acc.lower().startswith(b"http/1.1 101"):
                self.done.set_result(None)
            else:
                self.done.set_exception(ConnectionError(self.acc.split(b"\r\n", 1)[0].decode("latin-1")))

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError("the publishing connection was closed"))


class _Publisher(asyncio.DatagramProtocol):
    """The publishing connection, and the delivery reports of the client
    processes."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.port = spec["port"]
        self.processes = spec["processes"]
        self.reports: dict[int, list[int]] = {}  # seq: [processes reported, first, last]
        self.sent: dict[int, int] = {}
        self.done: dict[int, tuple[int, int]] = {}  # seq: (first, last) delivery
        self.synced = 0
        self.wakeup: Optional[asyncio.Event] = None
        self.conn: Optional[_Handshake] = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        seq, first, last = _DATAGRAM.unpack(data)
        if seq < 0:
            self.synced += 1
        else:
            report = self.reports.get(seq)
            if report is None:
                report = self.reports[seq] = [0, first, last]
            report[0] += 1
            report[1] = min(report[1], first)
            report[2] = max(report[2], last)
            if report[0] == self.processes:
                self.done[seq] = (report[1], report[2])
        if self.wakeup is not None:
            self.wakeup.set()

    def send(self, kind: int, seq: int = 0) -> int:
        now = time.monotonic_ns()
        assert self.conn is not None and self.conn.transport is not None
        self.conn.transport.write(frame(message(kind, seq, now), masked=True))
        return now

    async def connect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        request = upgrade_request("127.0.0.1", self.port, "/pub")
        _, self.conn = await loop.create_connection(lambda: _Handshake(request), "127.0.0.1", self.port)
        await asyncio.wait_for(self.conn.done, 10)
        return {}

    async def _wait(self, until: Callable[[], bool], deadline: float) -> bool:
        self.wakeup = asyncio.Event()
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), left)
            except asyncio.TimeoutError:
                return until()
        return True

    async def sync(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Sync messages until every connection has one, then the end of the sync."""
        started = time.monotonic()
        deadline = started + cmd["timeout"]
        sent = 0
        while self.synced < self.processes:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.synced} of {self.processes} client processes had a message on every connection"
                    f" within {cmd['timeout']:.0f} s ({sent} sync messages published)"
                )
            self.send(SYNC)
            sent += 1
            await self._wait(lambda: self.synced >= self.processes, time.monotonic() + SYNC_INTERVAL)
        self.send(END)
        await asyncio.sleep(cmd.get("settle", 0.2))
        return {"seconds": time.monotonic() - started, "sync_messages": sent}

    def _phase(self, first: int, count: int) -> dict[str, Any]:
        seqs = range(first, first + count)
        last = [self.done[k][1] - self.sent[k] for k in seqs]
        firsts = [self.done[k][0] - self.sent[k] for k in seqs]
        return {
            "messages": count,
            "first_sent": self.sent[first],
            "last_done": max(self.done[k][1] for k in seqs),
            "last_us": [t / 1000 for t in last],
            "first_us": [t / 1000 for t in firsts],
        }

    async def rate(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """``messages`` messages, one every ``1 / rate`` seconds."""
        first, count, interval = cmd["first"], cmd["messages"], 1.0 / cmd["rate"]
        start = time.monotonic()
        for i in range(count):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.sent[first + i] = self.send(DATA, first + i)
        end = first + count
        if not await self._wait(lambda: len(self.done) >= end, time.monotonic() + cmd["timeout"]):
            raise TimeoutError(f"{end - len(self.done)} message(s) did not reach every client in {cmd['timeout']} s")
        return dict(self._phase(first, count), span=count * interval)

    async def saturate(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """For ``seconds``: a new message whenever fewer than ``window`` are on their way."""
        first, window = cmd["first"], cmd["window"]
        k = first
        stop = time.monotonic() + cmd["seconds"]
        while time.monotonic() < stop and k - first < cmd["max_messages"]:
            while k - len(self.done) < window and k - first < cmd["max_messages"]:
                self.sent[k] = self.send(DATA, k)
                k += 1
            room = functools.partial(self._in_flight_below, k, window)
            if not await self._wait(room, time.monotonic() + cmd["timeout"]):
                raise TimeoutError(f"no message reached every client within {cmd['timeout']} s")
        if not await self._wait(lambda: len(self.done) >= k, time.monotonic() + cmd["timeout"]):
            raise TimeoutError(f"{k - len(self.done)} message(s) did not reach every client in {cmd['timeout']} s")
        return self._phase(first, k - first)

    def _in_flight_below(self, sent: int, window: int) -> bool:
        return sent - len(self.done) < window

    async def close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()
        return {}


async def _publisher_setup(spec: dict[str, Any]) -> tuple[dict[str, Any], Handlers]:
    publisher = _Publisher(spec)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: publisher, local_addr=("127.0.0.1", 0))
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return {"udp_port": sock.getsockname()[1], "description": "the benchmark's publisher"}, {
        "connect": publisher.connect,
        "sync": publisher.sync,
        "rate": publisher.rate,
        "saturate": publisher.saturate,
        "close": publisher.close,
    }


# ================================================================ in the runner


class FanoutError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port, no persistence."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="wsfast-fanout-redis-")
        self.port = _free_port()
        self.popen = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self.dir.name,
                "--daemonize", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise FanoutError("redis-server did not start within 10 s")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def version(self) -> str:
        try:
            out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=5).stdout
            return out.split(" v=")[1].split()[0] if " v=" in out else out.strip()
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "unknown"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.dir.cleanup()


def _cpu(pids: list[int]) -> float:
    return sum(proc_cpu_seconds(pid) or 0.0 for pid in pids)


def _rss(pids: list[int]) -> int:
    return sum(proc_rss_bytes(pid) or 0 for pid in pids)


def _send(worker: Any, cmd: dict[str, Any]) -> None:
    assert worker.popen.stdin is not None
    worker.popen.stdin.write(json.dumps(cmd) + "\n")
    worker.popen.stdin.flush()


def _ask_all(workers: list[Any], cmds: list[dict[str, Any]], timeout: float, what: str) -> list[dict[str, Any]]:
    """Send each worker its command, then read every answer (in parallel)."""
    for worker, cmd in zip(workers, cmds):
        if worker.popen.poll() is not None:
            raise FanoutError(f"{what}: a process is gone ({worker.popen.returncode})")
        _send(worker, cmd)
    deadline = time.monotonic() + timeout
    answers = []
    for worker in workers:
        answer = worker.read(max(1.0, deadline - time.monotonic()))
        if "error" in answer:
            raise FanoutError(f"{what}: {answer['error']}")
        answers.append(answer)
    return answers


def plan(config: Any, impl: str) -> tuple[int, list[int]]:
    """Server workers and each client process's connections."""
    workers = 1 if impl == "wsfast-memory" else config.fanout_workers
    clients = config.fanout_clients
    processes = max(1, math.ceil(clients / config.fanout_clients_per_process))
    base, extra = divmod(clients, processes)
    return workers, [base + (1 if i < extra else 0) for i in range(processes)]


def check_fd_limit(config: Any, impls: list[str]) -> None:
    """Fail before starting anything when a process would need more open
    files than RLIMIT_NOFILE allows (after raising it to its hard limit)."""
    hard = raise_fd_limit()
    needs = []
    for impl in impls:
        workers, per_process = plan(config, impl)
        needs.append((math.ceil(config.fanout_clients / workers) + 64, f"a server worker of {impl}"))
        needs.append((max(per_process) + 64, "a client process"))
    need, who = max(needs)
    if need > hard:
        raise FanoutError(
            f"{who} would hold about {need} sockets but a process may open {hard} files (RLIMIT_NOFILE, hard limit):"
            " raise it (ulimit -Hn, limits.conf) or run fewer clients"
            + (" (the memory hub runs one worker holding every client)" if "memory" in who else "")
        )


def one_run(suite: Suite, impl: str, loop: str, config: Any = None) -> dict[str, Any]:
    """One implementation, both phases; the run's figures (``error`` if it
    failed). ``config``: the suite's unless given (the c100k scenario's scale)."""
    from .runner import Worker

    config = config or suite.config
    workers_count, per_process = plan(config, impl)
    clients = sum(per_process)
    redis: Optional[RedisServer] = None
    servers: list[Any] = []
    loaders: list[Any] = []
    publisher: Any = None
    result: dict[str, Any] = {}
    try:
        if uses_redis(impl):
            redis = RedisServer()
            suite.descriptions.setdefault("fanout redis", f"redis-server {redis.version()} (--save '' --appendonly no)")
        port = _free_port()
        spec = {
            "role": "fanout-server",
            "impl": impl,
            "loop": loop,
            "port": port,
            "redis_url": redis.address if redis else "",
        }
        for _ in range(workers_count):
            servers.append(Worker(spec, None))
        for worker in servers:
            error = worker.start(60)
            if error:
                raise FanoutError(f"a server worker did not start: {error}")
        suite.remember(f"fanout {impl}", servers[0])
        server_pids = [w.pid for w in servers]
        time.sleep(0.3)
        rss_before = _rss(server_pids)
        counterpart = suite.counterpart_loop
        publisher = Worker(
            {"role": "fanout-publisher", "loop": counterpart, "port": port, "processes": len(per_process)}, None
        )
        error = publisher.start(30)
        if error:
            raise FanoutError(f"the publisher did not start: {error}")
        max_messages = 1 << 17
        for i in range(len(per_process)):
            loaders.append(
                Worker(
                    {
                        "role": "fanout-clients",
                        "loop": counterpart,
                        "port": port,
                        "source": f"127.0.0.{2 + i}",
                        "udp_port": publisher.info["udp_port"],
                        "max_messages": max_messages,
                    },
                    None,
                )
            )
        for worker in loaders:
            error = worker.start(30)
            if error:
                raise FanoutError(f"a client process did not start: {error}")
        started = time.monotonic()
        opened = _ask_all(
            loaders, [{"op": "open", "count": n, "timeout": 60} for n in per_process], 120 + clients / 200, "opening"
        )
        connect_s = time.monotonic() - started
        answer = publisher.request({"op": "connect"}, 30)
        if "error" in answer:
            raise FanoutError(f"the publisher could not connect: {answer['error']}")
        answer = publisher.request({"op": "sync", "timeout": 30 + clients / 1000}, 60 + clients / 500)
        if "error" in answer:
            raise FanoutError(f"sync: {answer['error']}")
        time.sleep(0.3)
        rss_after = _rss(server_pids)
        loader_pids = [w.pid for w in loaders] + [publisher.pid]
        redis_pids = [redis.pid] if redis else []
        result = {
            "workers": workers_count,
            "clients": clients,
            "client_processes": len(per_process),
            "connect_s": connect_s,
            "open_s": max(a["seconds"] for a in opened),
            "rss_before": rss_before,
            "rss_after": rss_after,
            "bytes_per_connection": (rss_after - rss_before) / clients,
        }
        delivered = counted = 0
        rate = config.fanout_deliveries_per_s / clients
        phases = [
            (
                "rate",
                {
                    "op": "rate",
                    "rate": rate,
                    "messages": max(2, round(rate * config.fanout_rate_seconds)),
                    "timeout": 30.0,
                },
            ),
            (
                "saturation",
                {
                    "op": "saturate",
                    "window": config.fanout_window,
                    "seconds": config.fanout_saturation_seconds,
                    "max_messages": max_messages // 2,
                    "timeout": 30.0,
                },
            ),
        ]
        for name, cmd in phases:
            cmd["first"] = delivered
            cpu = (_cpu(server_pids), _cpu(redis_pids), _cpu(loader_pids))
            answer = publisher.request(cmd, config.fanout_rate_seconds + config.fanout_saturation_seconds + 120)
            after = (_cpu(server_pids), _cpu(redis_pids), _cpu(loader_pids))
            if "error" in answer:
                raise FanoutError(f"{name}: {answer['error']}")
            counts = _ask_all(loaders, [{"op": "collect"}] * len(loaders), 30, "counting")
            delivered += answer["messages"]
            for c in counts:
                if c["failure"]:
                    raise FanoutError(f"{name}: {c['failure']}")
            low, high = min(c["min"] for c in counts), max(c["max"] for c in counts)
            if low != delivered or high != delivered or any(c["partial"] for c in counts):
                raise FanoutError(
                    f"{name}: connections counted {low} to {high} messages (and partial frames), {delivered} published"
                )
            frames = sum(c["frames"] for c in counts)  # since the sync, over every connection
            result[name] = _phase_figures(answer, clients, cpu, after, frames - counted)
            counted = frames
        stats = _ask_all(servers, [{"op": "stats"}] * len(servers), 30, "server stats")
        hub: dict[str, int] = {}
        for s in stats:
            for key, value in s["stats"].items():
                hub[key] = hub.get(key, 0) + value
        if hub:
            result["hub_stats"] = hub
        return result
    except FanoutError as exc:
        return {"error": str(exc)}
    finally:
        for worker in loaders:
            if worker.popen.poll() is None:
                worker.request({"op": "close"}, 15)
            worker.stop()
        if publisher is not None:
            publisher.stop()
        for worker in servers:
            worker.stop()
        if redis is not None:
            redis.stop()


def _phase_figures(
    answer: dict[str, Any], clients: int, before: tuple[float, ...], after: tuple[float, ...], counted: int
) -> dict[str, Any]:
    """One phase's figures: deliveries are messages x clients (checked against
    what the clients counted), from the first publish to the last delivery."""
    messages = answer["messages"]
    deliveries = messages * clients
    # at a fixed rate, the messages' schedule (n intervals); else the first publish to the last delivery
    seconds = answer.get("span") or (answer["last_done"] - answer["first_sent"]) / 1e9
    server_cpu, redis_cpu, loader_cpu = (b - a for a, b in zip(before, after))
    last, first = sorted(answer["last_us"]), sorted(answer["first_us"])
    return {
        "messages": messages,
        "deliveries": deliveries,
        "counted": counted,
        "seconds": seconds,
        "publish_rate": messages / seconds if seconds > 0 else 0.0,
        "deliveries_per_s": deliveries / seconds if seconds > 0 else 0.0,
        "last_p50_ms": percentile(last, 0.50) / 1000,
        "last_p99_ms": percentile(last, 0.99) / 1000,
        "last_max_ms": last[-1] / 1000,
        "first_p50_ms": percentile(first, 0.50) / 1000,
        "server_cpu_s": server_cpu,
        "redis_cpu_s": redis_cpu,
        "loadgen_cpu_s": loader_cpu,
        "server_us_per_delivery": server_cpu / deliveries * 1e6,
        "redis_us_per_delivery": redis_cpu / deliveries * 1e6,
        "deliveries_per_server_cpu_s": deliveries / server_cpu if server_cpu > 0 else 0.0,
    }


def run_scenario(suite: Suite, loop: str, impls: list[str]) -> None:
    """Every run of every implementation (interleaved, like the other scenarios)."""
    config = suite.config
    try:
        check_fd_limit(config, impls)
    except FanoutError as exc:
        for impl in impls:
            suite.fail("fanout", loop, PAYLOAD, impl, str(exc))
        return
    if "wsfast-memory" in impls:
        suite.say("  fanout: the memory hub does not cross processes: wsfast + memory hub runs 1 worker")
    for rep in range(config.fanout_runs):
        for impl in impls:
            suite.point("fanout", loop, PAYLOAD, impl)
            result = one_run(suite, impl, loop)
            suite.record("fanout", loop, PAYLOAD, impl, rep, result)


# ---------------------------------------------------------------- summary and report

PHASES = ("rate", "saturation")


def summarize_point(point: dict[str, Any]) -> dict[str, Any]:
    good = [r for r in point["runs"] if "error" not in r]
    errors = [r["error"] for r in point["runs"] if "error" in r]
    if not good:
        point["status"] = "failed"
        point["note"] = errors[0] if errors else "no run"
        return point
    point["status"] = "ok"
    point["note"] = f"{len(errors)} run(s) failed: {errors[0]}" if errors else ""
    summary: dict[str, dict[str, float]] = {}
    for phase in PHASES:
        for key, value in good[0][phase].items():
            if isinstance(value, (int, float)):
                summary[f"{phase}.{key}"] = summarize([r[phase][key] for r in good])
    for key in ("bytes_per_connection", "connect_s", "workers", "clients"):
        summary[key] = summarize([r[key] for r in good])
    point["summary"] = summary
    return point


def _spread(point: dict[str, Any], key: str, fmt: str = "{:.2f}") -> str:
    """`` (min-max)`` of the runs, when there are several."""
    summary = point["summary"][key]
    if summary["min"] == summary["max"]:
        return ""
    return f" ({fmt.format(summary['min'])}-{fmt.format(summary['max'])})"


def _floor(ratio: float) -> str:
    """A ratio to two decimals, rounded down (so that 2.996 does not read as 3.00 next to "not met")."""
    return f"{math.floor(ratio * 100) / 100:.2f}"


def _med(point: dict[str, Any], key: str) -> float:
    return float(point["summary"][key]["median"])


def _rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    return f"{value / 1e3:.1f}k" if value >= 1e3 else f"{value:.0f}"


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def ceiling(points: list[dict[str, Any]]) -> list[str]:
    """Server CPU per delivery against the ceiling's (frame once, one write per subscriber)."""
    ok = {p["impl"]: p for p in points if p["status"] == "ok"}
    lines: list[str] = []
    if "raw-redis" in ok:
        key = "saturation.server_us_per_delivery"
        floor = _med(ok["raw-redis"], key)
        for impl in ("wsfast-redis", "websockets-redis", "broadcaster"):
            if impl in ok:
                mine = _med(ok[impl], key)
                lines.append(
                    f"- {LABELS[impl]}: {mine:.2f} µs of server CPU per delivery at saturation against the"
                    f" ceiling's {floor:.2f} µs ({mine / floor:.2f}x)"
                )
    return lines


def targets(points: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, as measured ratios (never asserted)."""
    ok = {p["impl"]: p for p in points if p["status"] == "ok"}
    lines = []
    peers = [ok[i] for i in PEERS if i in ok]
    key = "saturation.deliveries_per_server_cpu_s"
    if peers:
        best = max(peers, key=lambda p: _med(p, key))
        for impl in ("wsfast-redis", "wsfast-streams", "wsfast-memory"):
            if impl in ok:
                ratio = _med(ok[impl], key) / _med(best, key)
                rate = _med(ok[impl], "saturation.deliveries_per_s") / _med(best, "saturation.deliveries_per_s")
                lines.append(
                    f"- {LABELS[impl]}: {_floor(ratio)}x the deliveries per server-CPU-second of the best peer"
                    f" ({LABELS[best['impl']]}, {_rate(_med(best, key))}/s), {rate:.2f}x its deliveries/s at"
                    f" saturation; target 3x: {'met' if ratio >= 3 else 'not met'}"
                )
    for impl, p in ok.items():
        p99, rate = _med(p, "rate.last_p99_ms"), _med(p, "rate.deliveries_per_s")
        n = int(_med(p, "rate.messages"))
        if impl.startswith("wsfast"):
            clients, workers = _med(p, "clients"), _med(p, "workers")
            # one message's server CPU, spread over the workers: a floor under the time to the last client
            floor = _med(p, "rate.server_us_per_delivery") * clients / workers / 1000
            lines.append(
                f"- {LABELS[impl]}: publish-to-last-delivery p99 {_ms(p99)} at {_rate(rate)} deliveries/s"
                f" ({n} messages of {clients:,.0f} deliveries); target under 10 ms:"
                f" {'met' if p99 < 10 else 'not met'}. One message costs each worker"
                f" {_ms(floor)} of CPU at this rate ({_med(p, 'rate.server_us_per_delivery'):.1f} µs x"
                f" {clients / workers:,.0f} connections), a floor under that latency"
            )
    if "wsfast-redis" in ok and "wsfast-streams" in ok:

        def total(p: dict[str, Any]) -> float:
            return _med(p, "saturation.server_us_per_delivery") + _med(p, "saturation.redis_us_per_delivery")

        ratio = total(ok["wsfast-streams"]) / total(ok["wsfast-redis"])
        server = _med(ok["wsfast-streams"], "saturation.server_us_per_delivery") / _med(
            ok["wsfast-redis"], "saturation.server_us_per_delivery"
        )
        lines.append(
            f"- Streams / Pub/Sub CPU per delivered message (servers + Redis, at saturation): {ratio:.2f}x"
            f" (servers alone {server:.2f}x); target at most 1.5x: {'met' if ratio <= 1.5 else 'not met'}"
        )
    return lines


def markdown(points: list[dict[str, Any]], config: dict[str, Any], title: str) -> list[str]:
    """The scenario's section of results.md."""
    order = {impl: n for n, impl in enumerate(IMPLS)}
    points = sorted(points, key=lambda p: order.get(p["impl"], 99))
    ok = [p for p in points if p["status"] == "ok"]
    lines = [f"## {title}", ""]
    if ok:
        lines += [
            f"{int(_med(ok[0], 'clients')):,} subscribed client connections, 64 B messages, one channel,"
            f" {config.get('fanout_runs', 1)} run(s) per implementation, interleaved (medians; in brackets the"
            " runs' range). Fixed rate:"
            f" {config.get('fanout_deliveries_per_s', 10000):,} deliveries/s"
            f" ({int(_med(ok[0], 'rate.messages'))} messages over about {config.get('fanout_rate_seconds')} s);"
            f" saturation: {config.get('fanout_window')} messages in flight for"
            f" {config.get('fanout_saturation_seconds')} s. Latency: from the publisher's write to the last"
            " (first) client having the message, per message. CPU: user + system time of the server worker"
            " processes and of redis-server over the phase, divided by the deliveries. Nothing is pinned: the"
            " servers, redis-server, the client processes and the publisher share the machine's cores.",
            "",
        ]
    header = [
        "implementation",
        "workers",
        "deliveries/s",
        "to last client p50 / p99",
        "to first client p50",
        "server CPU per delivery",
        "Redis CPU per delivery",
        "memory per connection",
    ]
    lines += ["Fixed rate:", "", "| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for p in points:
        if p["status"] != "ok":
            lines.append(f"| {LABELS.get(p['impl'], p['impl'])} | failed |" + " |" * (len(header) - 2))
            continue
        redis = _med(p, "rate.redis_us_per_delivery")
        lines.append(
            f"| {LABELS[p['impl']]} | {int(_med(p, 'workers'))} | {_rate(_med(p, 'rate.deliveries_per_s'))}/s"
            f" | {_ms(_med(p, 'rate.last_p50_ms'))} / {_ms(_med(p, 'rate.last_p99_ms'))}"
            f" | {_ms(_med(p, 'rate.first_p50_ms'))} | {_med(p, 'rate.server_us_per_delivery'):.2f} µs"
            f" | {f'{redis:.2f} µs' if p['impl'] != 'wsfast-memory' else '-'}"
            f" | {_med(p, 'bytes_per_connection') / 1000:.1f} KB |"
        )
    header = [
        "implementation",
        "deliveries/s",
        "messages/s",
        "to last client p50 / p99",
        "server CPU per delivery",
        "Redis CPU per delivery",
        "deliveries per server-CPU-s",
        "load generator CPU",
    ]
    lines += ["", "Saturation:", "", "| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for p in points:
        if p["status"] != "ok":
            lines.append(f"| {LABELS.get(p['impl'], p['impl'])} | failed |" + " |" * (len(header) - 2))
            continue
        redis = _med(p, "saturation.redis_us_per_delivery")
        share = _med(p, "saturation.loadgen_cpu_s") / max(_med(p, "saturation.seconds"), 1e-9)
        lines.append(
            f"| {LABELS[p['impl']]} | {_rate(_med(p, 'saturation.deliveries_per_s'))}/s"
            f"{_spread(p, 'saturation.deliveries_per_s', '{:,.0f}')}"
            f" | {_med(p, 'saturation.publish_rate'):.1f}"
            f" | {_ms(_med(p, 'saturation.last_p50_ms'))} / {_ms(_med(p, 'saturation.last_p99_ms'))}"
            f" | {_med(p, 'saturation.server_us_per_delivery'):.2f} µs{_spread(p, 'saturation.server_us_per_delivery')}"
            f" | {f'{redis:.2f} µs' if p['impl'] != 'wsfast-memory' else '-'}"
            f" | {_rate(_med(p, 'saturation.deliveries_per_server_cpu_s'))}"
            f" | {share:.0%} of a core |"
        )
    goals = targets(points)
    if goals:
        lines += ["", "Against the targets of issue 14:", ""] + goals
    floor = ceiling(points)
    if floor:
        lines += [
            "",
            "Against the ceiling (no WebSocket library: a minimal handshake, redis-py's PubSub, each message framed"
            " once and written to each subscriber's transport, the event loop's; wsfast writes through its own"
            " compiled socket transport):",
            "",
        ] + floor
    lines += [
        "",
        "- The memory hub does not cross processes: it runs with one worker, the others with"
        f" {config.get('fanout_workers', 2)} (one port, SO_REUSEPORT).",
        "- broadcaster (archived) loses the clients that subscribe while its first Redis SUBSCRIBE is in"
        " flight (it replaces the channel's subscriber set when that returns): each of its workers subscribes"
        " once at startup and waits 0.5 s before serving; its Redis listener, which with redis-py 8 ends before"
        " that first SUBSCRIBE is recorded (and then nothing is ever delivered), is re-armed after it.",
        "- Every connection counted every message (checked: the run fails otherwise). With a handful of"
        " messages at the fixed rate, p99 is close to their maximum.",
    ]
    for p in points:
        if p["note"]:
            lines.append(f"- {LABELS.get(p['impl'], p['impl'])}: {p['note']}")
    return lines


def chart(points: list[dict[str, Any]], path: str, title: str) -> None:
    """Three panels: deliveries/s at saturation, CPU per delivery at
    saturation (servers and Redis stacked), latency to the last client at
    the fixed rate."""
    matplotlib = import_module("matplotlib")
    matplotlib.use("Agg")
    plt = import_module("matplotlib.pyplot")
    order = {impl: n for n, impl in enumerate(IMPLS)}
    ok = sorted((p for p in points if p["status"] == "ok"), key=lambda p: order.get(p["impl"], 99))
    labels = [LABELS[p["impl"]] for p in ok]
    colors = [f"C{order.get(p['impl'], 0)}" for p in ok]
    fig, axes = plt.subplots(1, 3, figsize=(17, 0.6 * len(ok) + 2.4), squeeze=False)
    ax = axes[0][0]
    values = [_med(p, "saturation.deliveries_per_s") / 1000 for p in ok]
    bars = ax.barh(labels, values, color=colors)
    ax.bar_label(bars, fmt="%.0f", padding=2, fontsize=8)
    ax.set_xlabel("thousand deliveries/s at saturation")
    ax.invert_yaxis()
    ax = axes[0][1]
    server = [_med(p, "saturation.server_us_per_delivery") for p in ok]
    redis = [_med(p, "saturation.redis_us_per_delivery") for p in ok]
    ax.barh(labels, server, color=colors, label="server workers")
    bars = ax.barh(labels, redis, left=server, color="lightgray", label="redis-server")
    ax.bar_label(bars, labels=[f"{s + r:.1f}" for s, r in zip(server, redis)], padding=2, fontsize=8)
    ax.set_xlabel("CPU µs per delivery at saturation")
    ax.legend(fontsize=8, loc="best")
    ax.set_yticks(range(len(ok)), [""] * len(ok))
    ax.invert_yaxis()
    ax = axes[0][2]
    p50 = [_med(p, "rate.last_p50_ms") for p in ok]
    p99 = [_med(p, "rate.last_p99_ms") for p in ok]
    ys = range(len(ok))
    ax.barh([y - 0.2 for y in ys], p50, 0.4, color=colors, label="p50")
    bars = ax.barh([y + 0.2 for y in ys], p99, 0.4, color=colors, alpha=0.5, label="p99")
    ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=8)
    ax.axvline(10, color="red", linewidth=0.8, linestyle="--", label="10 ms target")
    ax.set_yticks(list(ys), [""] * len(ok))
    ax.set_xscale("log")
    ax.set_xlabel("ms from publish to the last client, fixed rate (p50, p99; log scale)")
    ax.legend(fontsize=8, loc="best")
    ax.invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
