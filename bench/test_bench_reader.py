"""Frame-reading benchmarks: groups reader-chunked and reader-whole.

A round parses one stream of N masked client binary frames (final, RSV 0,
random payload, a different key per frame), N chosen so that the stream is
about 2 MiB. ``reader-chunked`` feeds it in 64 KiB ``bytes`` chunks, the way
a transport delivers it; ``reader-whole`` feeds it in one call. Every reader
is built fresh in each round (its construction is part of the round, a few
hundred ns against milliseconds) and parses exactly the same ``bytes``
objects; the frames each chunk completes are counted and dropped before the
next chunk is fed. Before timing, each reader's output is checked once: N
frames, each with the right opcode and payload, and the timed function counts
N.

The reference is aiohttp's compiled reader. See bench/README.md.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from functools import lru_cache
from typing import Any, Callable, NamedTuple

import pytest
from _benchlib import KiB, MiB, client_frame, load, payload, size_label

PAYLOADS = [16, 125, 1 * KiB, 64 * KiB]
ROUND_BYTES = 2 * MiB
CHUNK = 64 * KiB
FEEDS = {"reader-chunked": "64KiB chunks", "reader-whole": "whole"}


class Stream(NamedTuple):
    chunks: tuple[bytes, ...]
    frames: int
    payloads: tuple[bytes, ...]
    nbytes: int


@lru_cache(maxsize=None)
def stream(size: int, group: str) -> Stream:
    rng = random.Random(size)
    body = payload(size, seed=1)
    wire_len = len(client_frame(body, b"\0\0\0\0"))
    n = max(1, round(ROUND_BYTES / wire_len))
    # A few distinct payloads, so a reader that mixes frames up is caught.
    payloads = tuple(bytes([i & 0xFF]) + body[1:] for i in range(n))
    wire = b"".join(client_frame(p, rng.randbytes(4)) for p in payloads)
    if group == "reader-chunked":
        chunks = tuple(wire[i : i + CHUNK] for i in range(0, len(wire), CHUNK))
    else:
        chunks = (wire,)
    return Stream(chunks, n, payloads, len(wire))


# ----------------------------------------------------------------- readers
# Each factory returns (count, collect):
# * count(chunks) -> number of frames: the timed function. Like a consumer
#   that handles each read's frames and drops them, it lets go of the frames
#   of a chunk before feeding the next one (retaining ~10^5 frames per round
#   would mostly measure the garbage collector walking them).
# * collect(chunks) -> [(opcode, payload)]: the same parse, kept, to check.


def wsfast_reader(module: str) -> Callable[[], tuple[Callable, Callable]]:
    def factory() -> tuple[Callable, Callable]:
        FrameReader = load(module).FrameReader

        def count(chunks: tuple[bytes, ...]) -> int:
            feed = FrameReader(max_frame_size=None, expect_masked=True).feed
            n = 0
            for chunk in chunks:
                n += len(feed(chunk))
            return n

        def collect(chunks: tuple[bytes, ...]) -> list:
            feed = FrameReader(max_frame_size=None, expect_masked=True).feed
            return [(f[0], f[3]) for chunk in chunks for f in feed(chunk)]

        return count, collect

    return factory


def aiohttp_reader() -> tuple[Callable, Callable]:
    mod = load("aiohttp._websocket.reader_c", what="aiohttp (compiled WebSocket reader)")
    WebSocketDataQueue, WebSocketReader = mod.WebSocketDataQueue, mod.WebSocketReader

    class Protocol:
        # The queue calls pause_reading() only above its limit, which the
        # limit below keeps out of reach.
        _reading_paused = False

        def pause_reading(self) -> None:
            raise AssertionError("the benchmark queue must never pause")

        def resume_reading(self) -> None:
            pass

    proto = Protocol()

    def reader() -> tuple[Any, Callable]:
        # reader_c types its queue as WebSocketDataQueue (a duck-typed queue
        # is refused with TypeError), so use the real one: its feed_data() is
        # a C call that appends (message, size) to the deque queue._buffer.
        # The limit (2**31 - 1, doubled internally) is never reached, so the
        # reader never stalls and the transport is never paused.
        queue = WebSocketDataQueue(proto, 2**31 - 1, loop=None)
        # max_msg_size=0: no limit; compress=False; decode_text=False.
        return queue, WebSocketReader(queue, 0, False, False).feed_data

    def count(chunks: tuple[bytes, ...]) -> int:
        queue, feed = reader()
        messages = queue._buffer
        n = 0
        for chunk in chunks:
            feed(chunk)
            n += len(messages)
            messages.clear()
        if queue.exception() is not None:  # feed_data() reports errors here
            raise queue.exception()
        return n

    def collect(chunks: tuple[bytes, ...]) -> list:
        queue, feed = reader()
        for chunk in chunks:
            feed(chunk)
        if queue.exception() is not None:
            raise queue.exception()
        # (WSMessage(type, data, extra), size); WSMsgType.BINARY == 2
        return [(int(msg[0]), msg[1]) for msg, _ in queue._buffer]

    return count, collect


def websockets_reader() -> tuple[Callable, Callable]:
    frames_mod = load("websockets.frames", what="websockets")
    StreamReader = load("websockets.streams", what="websockets").StreamReader
    parse = frames_mod.Frame.parse

    def parser(read_exact: Callable, out: list) -> Generator[None, None, None]:
        # websockets.protocol.Protocol.parse() without the at_eof() probe,
        # the size-limit bookkeeping and recv_frame(): the frame layer only.
        append = out.append
        while True:
            frame = yield from parse(read_exact, mask=True, max_size=None, extensions=None)
            append(frame)

    def run(chunks: tuple[bytes, ...], keep: bool) -> Any:
        reader = StreamReader()
        frames: list = []
        gen = parser(reader.read_exact, frames)
        next(gen)
        feed = reader.feed_data
        if keep:
            for chunk in chunks:
                feed(chunk)
                next(gen)
            return frames
        n = 0
        for chunk in chunks:
            feed(chunk)
            next(gen)
            n += len(frames)
            frames.clear()
        return n

    def count(chunks: tuple[bytes, ...]) -> int:
        return run(chunks, False)

    def collect(chunks: tuple[bytes, ...]) -> list:
        return [(f.opcode.value, bytes(f.data)) for f in run(chunks, True)]

    return count, collect


class Impl(NamedTuple):
    id: str
    label: str
    role: str
    note: str
    factory: Callable[[], tuple[Callable, Callable]]


IMPLS = [
    Impl("aiohttp", "aiohttp reader_c.WebSocketReader.feed_data", "reference",
         "also builds WSMessage tuples and queues them", aiohttp_reader),
    Impl("wsfast-speedups", "wsfast._speedups.FrameReader.feed", "subject", "",
         wsfast_reader("wsfast._speedups")),
    Impl("wsfast-fallback", "wsfast._fallback.FrameReader.feed", "subject", "pure Python",
         wsfast_reader("wsfast._fallback")),
    Impl("websockets", "websockets Frame.parse + StreamReader", "peer",
         "generator-based; C apply_mask", websockets_reader),
]


def _params() -> list:
    return [
        pytest.param(group, size, impl, id=f"{FEEDS[group].split()[0]}-{size_label(size)}-{impl.id}")
        for group in FEEDS
        for size in PAYLOADS
        for impl in IMPLS
    ]


@pytest.mark.parametrize(("group", "size", "impl"), _params())
def test_reader(bench: Any, group: str, size: int, impl: Impl) -> None:
    count, collect = impl.factory()
    data = stream(size, group)
    # Check once, outside the timing: same frames, same order, same payloads,
    # and the timed function counts them all.
    got = collect(data.chunks)
    assert len(got) == data.frames, f"{impl.label}: {len(got)} frames, expected {data.frames}"
    assert all(op == 2 for op, _ in got), f"{impl.label}: wrong opcodes"
    assert [bytes(p) for _, p in got] == list(data.payloads), f"{impl.label}: wrong payloads"
    del got
    n = count(data.chunks)
    assert n == data.frames, f"{impl.label}: counted {n} frames, expected {data.frames}"
    bench(
        count,
        data.chunks,
        group=group,
        case=f"{size_label(size)} x{data.frames}",
        case_order=PAYLOADS.index(size),
        impl=impl.label,
        impl_order=IMPLS.index(impl),
        role=impl.role,
        nbytes=data.nbytes,
        frames=data.frames,
        note=impl.note,
    )
