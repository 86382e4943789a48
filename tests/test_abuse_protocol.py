"""Abuse probes at the protocol level (sans-I/O, no sockets): what a hostile
peer can make a :class:`~wsfast.protocol.Connection` hold in memory and spend
in time, with the codec :mod:`wsfast.codec` picked (the suite runs once per
codec).

Each probe feeds the bytes in reads proportional to the message limit (a
sixteenth of it, 64 KiB for the default 1 MiB, as a transport's reads come),
measures the peak with :mod:`tracemalloc` and bounds the time. The
pure-Python codec parses about ten times slower: its probes are scaled down
tenfold (the bounds are relative to the limit, so they hold at any scale).
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import pytest

from wsfast import codec
from wsfast.events import BinaryMessage, Ping, TextMessage
from wsfast.extensions.permessage_deflate import Deflate
from wsfast.protocol import Connection, Role

from .wire import BINARY, CONT, PING, TEXT, encode, peer_frame

tracemalloc = pytest.importorskip("tracemalloc", reason="no tracemalloc (PyPy): the memory peak is not measurable")

MiB = 1 << 20
# One-byte fragments in a probe: 2**20 on the compiled codec, a tenth on the
# pure-Python one.
FRAGMENTS = MiB if codec.HAS_SPEEDUPS else MiB // 10
TIME_LIMIT = 10.0  # seconds per probe, generous for a loaded 2-core machine


def _feed(conn: Connection, data: bytes, read: int) -> tuple[list[Any], list[bytes], int, float]:
    """Feed ``data`` in reads of ``read`` bytes, writing out the replies after
    each as a transport does; return the events, what was sent, the traced
    peak of memory and the time taken."""
    view = memoryview(data)
    events: list[Any] = []
    out: list[bytes] = []
    tracemalloc.start()
    start = time.perf_counter()
    try:
        for i in range(0, len(data), read):
            events += conn.receive_data(view[i : i + read])
            sent = conn.data_to_send()
            if sent:
                out.append(sent)
            if conn.failure is not None:
                break
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return events, out, peak, elapsed


def _fragmented(role: Role, opcode: int, pieces: int, extra: bytes = b"") -> bytes:
    """A message of ``pieces`` one-byte fragments (``a``), ``extra`` after
    each but the last; built by repetition, as the frames are all alike."""
    first = peer_frame(role, opcode, b"a", fin=False)
    middle = peer_frame(role, CONT, b"a", fin=False)
    last = peer_frame(role, CONT, b"a")
    return first + extra + (middle + extra) * (pieces - 2) + last


@pytest.fixture(params=[Role.SERVER, Role.CLIENT], ids=["server", "client"])
def role(request: pytest.FixtureRequest) -> Role:
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize("opcode", [BINARY, TEXT], ids=["binary", "text"])
def test_many_tiny_fragments_cost_memory_in_proportion_to_the_message(role: Role, opcode: int) -> None:
    """2**20 one-byte fragments of a 1 MiB message (7.3 MB on the wire from a
    client) used to cost 124 MiB: one object per fragment until the end."""
    limit = FRAGMENTS
    conn = Connection(role, max_message_size=limit)
    read = limit // 16
    events, _, peak, elapsed = _feed(conn, _fragmented(role, opcode, FRAGMENTS), read)
    assert conn.failure is None
    assert events == [BinaryMessage(b"a" * limit) if opcode == BINARY else TextMessage("a" * limit)]
    # The message in progress, then joined: about 2x the limit. On top, the
    # frames one read completes, which the reader returns as a list (about
    # 100 bytes each): up to 9,362 frames of 7 bytes in a 64 KiB read from a
    # client, 21,845 of 3 bytes from a server (2 MiB).
    per_read = read // len(peer_frame(role, CONT, b"a")) * 100
    assert peak < 3 * limit + per_read, f"peak {peak / MiB:.2f} MiB for a {limit / MiB:.2f} MiB message"
    assert elapsed < TIME_LIMIT


def test_too_many_tiny_fragments_fail_at_the_limit(role: Role) -> None:
    """One fragment more than the limit allows: 1009, with no more memory
    than the message would have taken."""
    limit = FRAGMENTS // 2
    conn = Connection(role, max_message_size=limit)
    events, out, peak, elapsed = _feed(conn, _fragmented(role, BINARY, limit + 1), limit // 16)
    assert events == []
    assert conn.failure is not None and getattr(conn.failure, "code", None) == 1009
    assert out and out[-1][:1] == b"\x88"  # the close frame
    assert peak < 4 * limit, f"peak {peak / MiB:.2f} MiB for a {limit / MiB:.2f} MiB limit"
    assert elapsed < TIME_LIMIT


def test_control_frames_between_many_fragments(role: Role) -> None:
    """A ping after every fragment of a long message: each is answered as it
    comes (the pongs go out with each read, they do not pile up), and the
    message still arrives whole, in bounded memory."""
    pieces = FRAGMENTS // 8
    limit = pieces
    conn = Connection(role, max_message_size=limit)
    ping = peer_frame(role, PING, b"p")
    events, out, peak, elapsed = _feed(conn, _fragmented(role, TEXT, pieces, ping), limit // 16)
    assert conn.failure is None
    assert events[-1] == TextMessage("a" * limit)
    assert events[:-1] == [Ping(b"p")] * (pieces - 1)
    pong = encode(0xA, b"p") if role is Role.SERVER else None
    sent = b"".join(out)
    if pong is not None:  # a server's pongs are unmasked: compare them whole
        assert sent == pong * (pieces - 1)
    else:
        assert len(sent) == 7 * (pieces - 1)
    # The events of the whole message are kept here (one Ping each), so the
    # bound allows for them; the connection itself holds one message.
    assert peak < 4 * limit + 100 * pieces, f"peak {peak / MiB:.2f} MiB"
    assert elapsed < TIME_LIMIT


@pytest.mark.parametrize("fragments", [2, 1000, 20_000])
def test_fragmented_deflate_bomb(role: Role, fragments: int) -> None:
    """A compressed message of 200 MiB of zeros (about 200 KB on the wire)
    cut into many fragments: refused with 1009 once the inflated size passes
    the limit, holding little more than the limit, without inflating the
    rest."""
    limit = MiB
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(MiB)) + c.flush(zlib.Z_SYNC_FLUSH)
    steady = c.compress(bytes(MiB)) + c.flush(zlib.Z_SYNC_FLUSH)
    compressed = (block + steady * 199)[:-4]
    step = -(-len(compressed) // fragments)
    parts = [compressed[i : i + step] for i in range(0, len(compressed), step)]
    data = b"".join(
        peer_frame(role, BINARY if i == 0 else CONT, p, fin=i == len(parts) - 1, rsv=4 if i == 0 else 0)
        for i, p in enumerate(parts)
    )
    conn = Connection(role, deflate=Deflate(), max_message_size=limit)
    events, out, peak, elapsed = _feed(conn, data, 65536)
    assert events == []
    assert conn.failure is not None and getattr(conn.failure, "code", None) == 1009
    assert peak < 2.5 * limit, f"peak {peak / MiB:.2f} MiB for a {limit / MiB:.0f} MiB limit"
    assert elapsed < TIME_LIMIT
