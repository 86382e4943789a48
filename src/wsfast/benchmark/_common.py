"""Pieces shared by the benchmark's processes: event loops, process set-up,
wire bytes built by hand (independent of the wsfast code under test),
statistics and the JSON-lines protocol between the runner and its workers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import json
import os
import random
import resource
import sys
import time
from typing import Any, Callable, Coroutine, Optional, Sequence

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLIENT_KEY = b"d3NmYXN0LWJlbmNoLWtleQ=="
"""The fixed ``Sec-WebSocket-Key`` of the benchmark's own client."""
MASK = b"\x37\xfa\x21\x3d"
"""The fixed masking key of the benchmark's pre-built client frames."""
OP_BINARY = 0x2
OP_CLOSE = 0x8

PEER_MODULES: dict[str, str] = {
    "websockets": "websockets",
    "picows": "picows",
    "aiohttp": "aiohttp",
    "uvloop": "uvloop",
    "matplotlib": "matplotlib",
    "trustme": "trustme",
    "broadcaster": "broadcaster",
    "redis": "redis",
}
"""Import name of each optional package the benchmark can use."""


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def header_length(length: int, masked: bool) -> int:
    """Bytes of a frame header for a payload of ``length`` bytes."""
    base = 2 if length < 126 else 4 if length < 65536 else 10
    return base + 4 if masked else base


def frame(payload: bytes, *, opcode: int = OP_BINARY, masked: bool = False, rsv1: bool = False) -> bytes:
    """A whole final frame, masked with :data:`MASK` when ``masked``."""
    n = len(payload)
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 65536:
        head = bytes((first, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, mask_bit | 127)) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = (MASK * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + MASK + body


def parse_frame(data: bytes | bytearray) -> Optional[tuple[int, bool, bytes, int]]:
    """``(opcode, rsv1, payload, total_length)`` of the unmasked frame at the
    start of ``data``, or ``None`` while it is incomplete."""
    if len(data) < 2:
        return None
    n = data[1] & 0x7F
    pos = 2
    if n == 126:
        if len(data) < 4:
            return None
        n, pos = int.from_bytes(data[2:4], "big"), 4
    elif n == 127:
        if len(data) < 10:
            return None
        n, pos = int.from_bytes(data[2:10], "big"), 10
    if data[1] & 0x80:
        raise ValueError("the server sent a masked frame")
    if len(data) < pos + n:
        return None
    return data[0] & 0x0F, bool(data[0] & 0x40), bytes(data[pos : pos + n]), pos + n


def read_101(acc: bytearray, key: bytes = CLIENT_KEY) -> Optional[str]:
    """The server's handshake response at the start of ``acc``, lowercased,
    once complete (it is removed from ``acc``; ``None`` until then); raises
    unless it is a 101 with the right ``Sec-WebSocket-Accept``."""
    end = acc.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(acc[:end]).decode("latin-1").lower()
    del acc[: end + 4]
    if not head.startswith("http/1.1 101"):
        raise ConnectionError(f"handshake refused: {head.splitlines()[0]}")
    if f"sec-websocket-accept: {accept_key(key).decode().lower()}" not in head:
        raise ConnectionError("wrong Sec-WebSocket-Accept")
    return head


def payload(size: int, compressible: bool = False) -> bytes:
    """A deterministic message of ``size`` bytes: random bytes, or
    JSON-like text that compresses about 3-5x."""
    rng = random.Random(size)
    if not compressible:
        return (rng.randbytes(min(size, 4096)) * (size // 4096 + 1))[:size]
    parts: list[bytes] = []
    total = 0
    while total < size:
        part = b'{"seq":%d,"symbol":"ABC%d","price":%d.%02d,"side":"%s"},' % (
            rng.randrange(10**6),
            rng.randrange(100),
            rng.randrange(1000),
            rng.randrange(100),
            rng.choice((b"buy", b"sell")),
        )
        parts.append(part)
        total += len(part)
    return b"".join(parts)[:size]


def upgrade_request(host: str, port: int, path: str = "/", extensions: Optional[str] = None) -> bytes:
    """The fixed HTTP upgrade request of the benchmark's client."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {CLIENT_KEY.decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ---------------------------------------------------------------- processes


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def wsfast_description(api: str, tls: Any = None) -> str:
    """wsfast's version, ``api``, its codec and, where it runs (asyncio's
    standard loop and uvloop), its own socket or TLS transport (the event
    loop is set by then)."""
    from .. import IMPLEMENTATION, __version__
    from ..asyncio.sockets import usable

    own = usable(asyncio.get_event_loop(), tls, True)
    transport = ", wsfast's TLS transport" if tls is not None else ", wsfast's socket transport"
    return f"wsfast {__version__}, {api}, {IMPLEMENTATION} codec" + (transport if own else "")


def import_optional(name: str) -> Any:
    """Import an optional package by its name in :data:`PEER_MODULES`."""
    return importlib.import_module(PEER_MODULES[name])


def import_module(name: str) -> Any:
    """Import a submodule of an optional package (typed ``Any``: the
    peers are not dependencies, so the type checker need not see them)."""
    return importlib.import_module(name)


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function creating a new event loop: ``asyncio`` or ``uvloop``."""
    if name == "uvloop":
        return import_optional("uvloop").new_event_loop  # type: ignore[no-any-return]
    if name == "asyncio":
        return asyncio.new_event_loop
    raise ValueError(f"unknown event loop {name!r}")


def run_on(loop_name: str, main: Coroutine[Any, Any, Any]) -> Any:
    """Run ``main`` to completion on a new loop of the given kind."""
    loop = loop_factory(loop_name)()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()


def proc_cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``), or ``None``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_bytes(pid: int) -> Optional[int]:
    """Resident set size of process ``pid`` (Linux ``/proc``), or ``None``."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


class CpuMeter:
    """CPU share of this process and of a peer process over an interval
    (1.0 = one core busy all the time)."""

    def __init__(self, peer_pid: Optional[int]) -> None:
        self.peer_pid = peer_pid
        self.wall = time.perf_counter()
        self.own = time.process_time()
        self.peer = proc_cpu_seconds(peer_pid) if peer_pid else None

    def shares(self) -> tuple[float, Optional[float]]:
        """``(own share, peer share or None)`` since creation."""
        wall = max(time.perf_counter() - self.wall, 1e-9)
        own = (time.process_time() - self.own) / wall
        peer = None
        if self.peer_pid and self.peer is not None:
            now = proc_cpu_seconds(self.peer_pid)
            if now is not None:
                peer = (now - self.peer) / wall
        return own, peer


# ---------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[int], q: float) -> float:
    """The ``q`` quantile (0-1) of sorted values, nearest rank."""
    if not sorted_values:
        return 0.0
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and interquartile range of the runs of one point."""
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    median = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {
        "median": median,
        "min": ordered[0],
        "max": ordered[-1],
        "q1": ordered[n // 4],
        "q3": ordered[(3 * n) // 4 if n > 1 else 0],
    }


class Window:
    """The counted part of a request-response run, and when it ends.

    Round trips that end in the first ``warmup`` seconds are not counted.
    Counting stops at the first of: ``max_messages`` round trips counted;
    ``duration`` seconds elapsed with at least ``min_messages`` counted (so
    that a run of large messages counts more than a handful);
    ``max_seconds`` elapsed.
    """

    def __init__(self, cmd: dict[str, Any]) -> None:
        self.start = time.perf_counter_ns() + int(cmd["warmup"] * 1e9)
        self.end = self.start + int(cmd["duration"] * 1e9)
        self.hard_end = self.start + int(cmd["max_seconds"] * 1e9)
        self.min_messages = cmd["min_messages"]
        self.max_messages = cmd["max_messages"]
        self.stop = 0
        self.count = 0
        self.latencies: list[int] = []

    def done(self, sent_at: int, now: int) -> bool:
        """Record a round trip that ends ``now``; whether to send another."""
        if self.stop:
            return False
        if now >= self.start:
            self.count += 1
            self.latencies.append(now - sent_at)
            count = self.count
            if count >= self.max_messages or now >= self.hard_end or (now >= self.end and count >= self.min_messages):
                self.stop = now
                return False
        return True

    def result(self) -> dict[str, Any]:
        """Round trips, seconds, messages per second, p50 and p99."""
        latencies = sorted(self.latencies)
        seconds = (self.stop - self.start) / 1e9 if self.stop else 0.0
        return {
            "messages": self.count,
            "seconds": seconds,
            "msgs_per_s": self.count / seconds if seconds > 0 else 0.0,
            "p50_us": percentile(latencies, 0.50) / 1000,
            "p99_us": percentile(latencies, 0.99) / 1000,
        }


# ---------------------------------------------------------------- worker protocol


def reply(message: dict[str, Any]) -> None:
    """Write one JSON line to the runner (stdout is reserved for these)."""
    sys.__stdout__.write(json.dumps(message) + "\n")  # type: ignore[union-attr]
    sys.__stdout__.flush()  # type: ignore[union-attr]


def commands() -> Any:
    """The runner's commands, one JSON object per stdin line, until EOF."""
    for line in sys.stdin:
        if line.strip():
            yield json.loads(line)
