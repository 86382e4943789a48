"""The Redis backends of the hub (wsfast.hub.redis) against a real
``redis-server`` (tests/hub/conftest.py), driven directly with a recording
sink: two backend instances in one event loop stand for two processes, each
with its own connections.

What they show: delivery in order across instances, text and binary, many
channels; a subscription made while the reader is blocked takes effect at
once; unsubscribing stops delivery; Pub/Sub signals the gap after Redis is
killed and restarted; Streams with persistence deliver every acknowledged
message exactly once and in order across a ``kill -9`` of Redis; history with
retention; clear errors for an unreachable Redis, bad URLs and a publish
during a long outage. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import sys
from typing import Callable, Optional
from urllib.parse import urlsplit

import pytest

redis_asyncio = pytest.importorskip("redis.asyncio", reason="redis-py is needed for the Redis hub backends")

from wsfast.hub.backend import Backend, HubClosed, HubUnavailable, parse_id  # noqa: E402
from wsfast.hub.redis import RedisPubSubBackend, RedisStreamsBackend  # noqa: E402

from ..asyncio.helpers import eventually, run  # noqa: E402
from .conftest import RedisServer  # noqa: E402

Message = tuple[str, Optional[str], bytes, bool]

KINDS = {"pubsub": (RedisPubSubBackend, "redis"), "streams": (RedisStreamsBackend, "redis+streams")}


class Recorder:
    """A Sink that records what it gets."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.gaps: list[tuple[list[str], str]] = []

    def deliver(self, channel: str, id: Optional[str], data: bytes, text: bool) -> None:
        self.messages.append((channel, id, data, text))

    def gap(self, channels: list[str], reason: str) -> None:
        self.gaps.append((sorted(channels), reason))

    def of(self, channel: str) -> list[Message]:
        return [m for m in self.messages if m[0] == channel]


def url_of(server: RedisServer, kind: str, query: str = "") -> str:
    scheme = KINDS[kind][1]
    return f"{scheme}://127.0.0.1:{server.port}/0" + (f"?{query}" if query else "")


def backend(url: str, sink: Optional[Recorder] = None) -> Backend:
    parts = urlsplit(url)
    cls: type[Backend] = RedisStreamsBackend if parts.scheme.endswith("+streams") else RedisPubSubBackend
    return cls(parts, sink or Recorder())


def payload(i: int) -> tuple[bytes, bool]:
    """Message i: text for even i, binary (not UTF-8) for odd i."""
    return (f"message {i} é".encode(), True) if i % 2 == 0 else (b"\x00\xff" + i.to_bytes(4, "big"), False)


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ---------------------------------------------------------------- delivery


def test_in_order_across_instances_text_and_binary(redis_server: Callable[..., RedisServer], kind: str) -> None:
    server = redis_server()

    async def main() -> None:
        ra, rb = Recorder(), Recorder()
        a, b = backend(url_of(server, kind), ra), backend(url_of(server, kind), rb)
        await a.start()
        await b.start()
        try:
            await a.subscribe("room")
            await b.subscribe("room")
            ids = [await a.publish("room", *payload(i)) for i in range(300)]
            await eventually(lambda: len(ra.messages) == 300 and len(rb.messages) == 300, timeout=10)
            expected = [("room", id, *payload(i)) for i, id in enumerate(ids)]
            assert ra.messages == expected
            assert rb.messages == expected
            if kind == "streams":
                assert all(isinstance(id, str) for id in ids)
                assert [parse_id(id) for id in ids if id] == sorted({parse_id(id) for id in ids if id})
            else:
                assert ids == [None] * 300
        finally:
            await a.stop()
            await b.stop()

    run(main(), timeout=20)


def test_many_channels(redis_server: Callable[..., RedisServer], kind: str) -> None:
    server = redis_server()
    channels = [f"ch{i}" for i in range(60)]

    async def main() -> None:
        rb = Recorder()
        a, b = backend(url_of(server, kind)), backend(url_of(server, kind), rb)
        await a.start()
        await b.start()
        try:
            await asyncio.gather(*(b.subscribe(c) for c in channels))
            for round in range(5):
                for c in channels:
                    await a.publish(c, f"{c}/{round}".encode(), True)
            await eventually(lambda: len(rb.messages) == 5 * len(channels), timeout=10)
            for c in channels:
                assert [m[2] for m in rb.of(c)] == [f"{c}/{r}".encode() for r in range(5)]
        finally:
            await a.stop()
            await b.stop()

    run(main(), timeout=20)


def test_subscribe_while_the_reader_waits(redis_server: Callable[..., RedisServer], kind: str) -> None:
    """The first message published after subscribe() returns is delivered,
    without waiting for the reader's XREAD to time out (its BLOCK is made a
    minute here: only CLIENT UNBLOCK gets it out in time)."""
    server = redis_server()

    async def main() -> None:
        rb = Recorder()
        a, b = backend(url_of(server, kind)), backend(url_of(server, kind), rb)
        if isinstance(b, RedisStreamsBackend):
            b.block_ms = 60_000
        await a.start()
        await b.start()
        try:
            await b.subscribe("first")
            await asyncio.sleep(0.2)  # the reader is blocked on "first" by now
            for i in range(25):
                channel = f"late{i}"
                await b.subscribe(channel)
                await a.publish(channel, b"hello", True)
                await eventually(lambda channel=channel: rb.of(channel), timeout=5)  # type: ignore[misc]
                if i % 5 == 0:
                    await asyncio.sleep(0.05)  # sometimes blocked, sometimes just sent
            assert len(rb.messages) == 25
        finally:
            await a.stop()
            await b.stop()

    run(main(), timeout=40)


def test_unsubscribe_stops_delivery(redis_server: Callable[..., RedisServer], kind: str) -> None:
    server = redis_server()

    async def main() -> None:
        rb = Recorder()
        a, b = backend(url_of(server, kind)), backend(url_of(server, kind), rb)
        await a.start()
        await b.start()
        try:
            await b.subscribe("gone")
            await b.subscribe("kept")
            await a.publish("gone", b"1", True)
            await eventually(lambda: len(rb.messages) == 1)
            await b.unsubscribe("gone")
            await a.publish("gone", b"2", True)
            await a.publish("kept", b"3", True)
            await eventually(lambda: rb.of("kept"))
            await asyncio.sleep(0.1)
            assert [m[2] for m in rb.messages] == [b"1", b"3"]
            # and again
            await b.subscribe("gone")
            await a.publish("gone", b"4", True)
            await eventually(lambda: len(rb.messages) == 3)
            assert rb.messages[-1][2] == b"4"
        finally:
            await a.stop()
            await b.stop()

    run(main(), timeout=20)


# ---------------------------------------------------------------- Redis killed


def test_pubsub_gap_after_redis_restart(
    redis_server: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_server()
    caplog.set_level(logging.INFO, logger="wsfast.hub")

    async def main() -> None:
        rec = Recorder()
        b = backend(url_of(server, "pubsub"), rec)
        await b.start()
        try:
            await b.subscribe("a")
            await b.subscribe("b")
            await b.publish("a", b"before", True)
            await eventually(lambda: len(rec.messages) == 1)
            server.kill()
            await asyncio.sleep(0.5)  # a few reconnection attempts fail
            await asyncio.to_thread(server.restart)
            await eventually(lambda: rec.gaps, timeout=15)
            assert rec.gaps == [(["a", "b"], "redis pub/sub connection lost: messages published meanwhile were missed")]
            await b.publish("b", b"after", False)
            await eventually(lambda: len(rec.messages) == 2)
            assert rec.messages[-1] == ("b", None, b"after", False)
        finally:
            await b.stop()

    run(main(), timeout=30)
    records = [r for r in caplog.records if r.name == "wsfast.hub"]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    infos = [r for r in records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and "lost Redis at redis://127.0.0.1:" in warnings[0].getMessage(), records
    assert len(infos) == 1 and "is back after" in infos[0].getMessage(), records


def test_streams_exactly_once_across_kill_9(
    redis_server: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Redis with appendfsync always is killed (-9) and restarted while a
    publisher publishes 500 messages: every acknowledged id is delivered
    once, in order; nothing is reported missing."""
    server = redis_server(persistent=True)
    url = url_of(server, "streams", "publish_timeout=10")
    caplog.set_level(logging.INFO, logger="wsfast.hub")

    async def main() -> None:
        rec = Recorder()
        pub, sub = backend(url), backend(url, rec)
        await pub.start()
        await sub.start()
        acked: dict[str, int] = {}
        failed: list[int] = []
        try:
            await sub.subscribe("feed")

            async def publisher() -> None:
                for i in range(500):
                    try:
                        id = await pub.publish("feed", str(i).encode(), True)
                    except HubUnavailable:
                        failed.append(i)
                    else:
                        assert id is not None
                        acked[id] = i
                    await asyncio.sleep(0.002)

            async def killer() -> None:
                await eventually(lambda: len(acked) >= 150, timeout=10)
                server.kill()
                await asyncio.sleep(0.3)
                await asyncio.to_thread(server.restart)

            await asyncio.gather(publisher(), killer())
            await eventually(lambda: set(acked) <= {m[1] for m in rec.messages}, timeout=20)
            await asyncio.sleep(0.1)
        finally:
            await pub.stop()
            await sub.stop()
        delivered = [parse_id(m[1]) for m in rec.messages if m[1]]
        assert len(delivered) == len(rec.messages)
        assert delivered == sorted(set(delivered)), "out of order or delivered twice"
        for channel, id, data, text in rec.messages:
            assert channel == "feed" and text
            assert id is not None
            if id in acked:
                assert data == str(acked[id]).encode()
        # Unacknowledged appends (a reply lost in the kill) repeat a payload
        # under a new id: at most a few, never an acknowledged one twice.
        assert len(rec.messages) - len(acked) <= 5
        assert len(acked) + len(failed) == 500
        assert rec.gaps == []

    run(main(), timeout=40)
    lost = [r for r in caplog.records if r.name == "wsfast.hub" and "lost Redis" in r.getMessage()]
    assert len(lost) == 2, "each backend saw the outage once"


def test_streams_gap_when_redis_lost_the_data(redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server()  # no persistence: a restart empties it

    async def main() -> None:
        rec = Recorder()
        b = backend(url_of(server, "streams"), rec)
        await b.start()
        try:
            await b.subscribe("s")
            await b.publish("s", b"1", True)
            await eventually(lambda: len(rec.messages) == 1)
            server.kill()
            await asyncio.to_thread(server.restart)
            await eventually(lambda: rec.gaps, timeout=15)
            assert rec.gaps[0][0] == ["s"] and "lost" in rec.gaps[0][1]
            id = await b.publish("s", b"2", True)
            await eventually(lambda: len(rec.messages) == 2)
            assert rec.messages[-1] == ("s", id, b"2", True)
        finally:
            await b.stop()

    run(main(), timeout=30)


def test_publish_during_a_long_outage(redis_server: Callable[..., RedisServer], kind: str) -> None:
    server = redis_server()

    async def main() -> None:
        b = backend(url_of(server, kind, "publish_timeout=0.5"))
        await b.start()
        try:
            await b.publish("c", b"ok", True)
            server.kill()
            loop = asyncio.get_running_loop()
            began = loop.time()
            with pytest.raises(HubUnavailable) as info:
                await asyncio.wait_for(b.publish("c", b"lost", True), 5)
            assert loop.time() - began >= 0.5
            message = str(info.value)
            assert message.startswith(f"cannot publish to 'c': Redis at redis://127.0.0.1:{server.port}/0 ")
            assert "unreachable for 0.5 s" in message and "Connection refused" in message
            if kind == "streams":
                with pytest.raises(HubUnavailable):
                    await asyncio.wait_for(b.subscribe("d"), 5)
            await asyncio.to_thread(server.restart)
            await asyncio.wait_for(b.publish("c", b"again", True), 5)
        finally:
            await b.stop()

    run(main(), timeout=20)


# ---------------------------------------------------------------- history


def test_history_with_retention(redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server()

    async def main() -> None:
        b = backend(url_of(server, "streams", "maxlen=10"))
        direct = redis_asyncio.Redis.from_url(server.url)
        await b.start()
        try:
            ids = [await b.publish("h", *payload(i)) for i in range(350)]
            assert all(ids)
            kept = [id.decode() for id, _ in await direct.xrange("wsfast:h")]
            # MAXLEN ~ trims whole stream nodes: at least 10 kept, fewer than all
            assert 10 <= len(kept) < 350 and kept == ids[-len(kept) :]
            first, last = kept[0], ids[-1]
            assert last is not None
            index = {id: i for i, id in enumerate(ids)}

            def entries(after: str) -> list[tuple[str, bytes, bool]]:
                return [(id, *payload(index[id])) for id in ids[index[after] + 1 :] if id]

            h = await b.history("h", first, last)  # the client saw a kept entry
            assert h.complete and [(e.id, e.data, e.text) for e in h.entries] == entries(first)
            older = ids[index[first] - 1]
            assert older is not None
            h = await b.history("h", older, last)  # its last id was trimmed: a hole, probably
            assert not h.complete and h.entries[0].id == first and len(h.entries) == len(kept)
            h = await b.history("h", ids[0] or "", last)
            assert not h.complete and len(h.entries) == len(kept)
            h = await b.history("h", "0-0", last)  # saw nothing, and things were trimmed
            assert not h.complete and len(h.entries) == len(kept)
            h = await b.history("h", last, last)
            assert h.complete and h.entries == []
            middle = kept[len(kept) // 2]
            h = await b.history("h", first, middle)  # upto is inclusive
            assert h.complete and [e.id for e in h.entries] == kept[1 : len(kept) // 2 + 1]

            # nothing trimmed: complete from the start
            few = [await b.publish("few", *payload(i)) for i in range(5)]
            h = await b.history("few", "0-0", few[-1] or "")
            assert h.complete and [(e.id, e.data, e.text) for e in h.entries] == [
                (id, *payload(i)) for i, id in enumerate(few)
            ]
            # no stream: complete only if the client saw nothing
            assert (await b.history("none", "0-0", "0-0")).complete
            assert not (await b.history("none", "1-0", "0-0")).complete
            # an id newer than anything Redis has (Redis lost it): a hole
            assert not (await b.history("few", f"{parse_id(few[-1] or '')[0] + 1}-0", few[-1] or "")).complete
        finally:
            await b.stop()
            await direct.aclose()

    run(main(), timeout=20)


def test_history_in_batches(redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server()

    async def main() -> None:
        b = backend(url_of(server, "streams", "maxlen=0"))
        await b.start()
        try:
            ids = await asyncio.gather(*(b.publish("long", str(i).encode(), True) for i in range(2500)))
            ordered = sorted(ids, key=lambda id: parse_id(id or ""))
            h = await b.history("long", "0-0", ordered[-1] or "")
            assert h.complete
            assert [e.id for e in h.entries] == ordered
            h = await b.history("long", ordered[999] or "", ordered[2200] or "")
            assert h.complete and [e.id for e in h.entries] == ordered[1000:2201]
        finally:
            await b.stop()

    run(main(), timeout=20)


def test_maxage_trims_old_entries(redis_server: Callable[..., RedisServer]) -> None:
    server = redis_server()

    async def main() -> None:
        b = backend(url_of(server, "streams", "maxage=0.2&maxlen=0"))
        direct = redis_asyncio.Redis.from_url(server.url)
        await b.start()
        try:
            for _ in range(300):  # more than a stream node, so that ~ can drop one
                await b.publish("aged", b"old", True)
            await asyncio.sleep(1.1)  # older than maxage, and past the trimming interval
            last = await b.publish("aged", b"new", True)
            kept = await direct.xrange("wsfast:aged")
            assert len(kept) < 301 and kept[-1][0].decode() == last
        finally:
            await b.stop()
            await direct.aclose()

    run(main(), timeout=20)


# ---------------------------------------------------------------- errors


def test_unreachable_redis_at_start(kind: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed below: nothing listens there

    async def main() -> None:
        scheme = KINDS[kind][1]
        b = backend(f"{scheme}://:hunter2@127.0.0.1:{port}/0?connect_timeout=2")
        with pytest.raises(HubUnavailable) as info:
            await asyncio.wait_for(b.start(), 5)
        assert str(info.value) == f"cannot reach Redis at redis://127.0.0.1:{port}/0: Connection refused"
        assert "hunter2" not in repr(info.value)
        with pytest.raises(HubClosed):
            await b.publish("x", b"", True)

    run(main(), timeout=10)


def test_silent_redis_at_start(kind: str) -> None:
    """Something listens but never answers: HubUnavailable after connect_timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]

    async def main() -> None:
        scheme = KINDS[kind][1]
        b = backend(f"{scheme}://127.0.0.1:{port}/2?connect_timeout=0.3")
        with pytest.raises(HubUnavailable) as info:
            await asyncio.wait_for(b.start(), 5)
        assert str(info.value) == f"cannot reach Redis at redis://127.0.0.1:{port}/2: no answer within 0.3 s"

    try:
        run(main(), timeout=10)
    finally:
        listener.close()


@pytest.mark.parametrize(
    "url, words",
    [
        ("redis://localhost/0?maxlen=5", ["maxlen"]),  # Streams only
        ("redis://localhost/0?bogus=1&other=2", ["bogus", "other"]),
        ("redis+streams://localhost/0?max_len=5", ["max_len"]),
        ("redis+streams://localhost/0?maxlen=-1", ["maxlen=", "-1"]),
        ("redis+streams://localhost/0?maxlen=ten", ["maxlen=", "ten"]),
        ("redis+streams://localhost/0?maxage=0", ["maxage="]),
        ("redis://localhost/0?connect_timeout=nan", ["connect_timeout="]),
        ("redis://localhost/0?publish_timeout=-1", ["publish_timeout="]),
        ("redis://localhost/zero", ["database number"]),
        ("redis://:secret@localhost/0?nope=1", ["nope"]),
    ],
)
def test_bad_urls(url: str, words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        backend(url)
    for word in words:
        assert word in str(info.value)
    assert "secret" not in str(info.value)


def test_parameters_and_defaults() -> None:
    b = backend("rediss+streams://u:p@example.com:6380/3?maxlen=5&maxage=60&prefix=app:&publish_timeout=0")
    assert isinstance(b, RedisStreamsBackend)
    assert (b.maxlen, b.maxage, b.prefix, b.publish_timeout, b.connect_timeout) == (5, 60.0, "app:", 0.0, 5.0)
    assert b.address == "rediss://example.com:6380/3" and b.ordered
    p = backend("redis://")
    assert isinstance(p, RedisPubSubBackend) and not p.ordered
    assert (p.address, p.prefix, p.publish_timeout) == ("redis://localhost:6379/0", "wsfast:", 5.0)
    s = backend("redis+streams://h")
    assert isinstance(s, RedisStreamsBackend) and (s.maxlen, s.maxage) == (10000, None)
    with pytest.raises(ValueError):
        RedisPubSubBackend(urlsplit("redis+streams://h"), Recorder())


def test_stop_closes_everything(redis_server: Callable[..., RedisServer], kind: str) -> None:
    server = redis_server()

    async def main() -> None:
        direct = redis_asyncio.Redis.from_url(server.url)
        b = backend(url_of(server, kind))
        with pytest.raises(HubClosed):
            await b.publish("x", b"", True)
        await b.start()
        await b.subscribe("x")
        await b.publish("x", b"1", True)
        assert len(await direct.client_list()) >= 3  # direct, the reader, a command connection
        tasks = set(b._tasks)  # type: ignore[attr-defined]
        assert tasks
        await b.stop()
        assert all(t.done() for t in tasks)
        for _ in range(100):  # Redis sees the connections close a moment later
            clients = await direct.client_list()
            if len(clients) == 1:
                break
            await asyncio.sleep(0.02)
        assert len(clients) == 1, clients  # only this one
        with pytest.raises(HubClosed):
            await b.publish("x", b"", True)
        await direct.aclose()

    run(main(), timeout=10)


def test_without_redis_py(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.") or m == "wsfast.hub.redis"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)  # type: ignore[arg-type]
    with pytest.raises(ImportError, match=r"pip install 'wsfast\[redis\]'"):
        importlib.import_module("wsfast.hub.redis")
    monkeypatch.delitem(sys.modules, "wsfast.hub.redis", raising=False)


# ---------------------------------------------------------------- through wsfast.hub.Hub


def test_hub_over_redis_streams_resumes_after_an_id(redis_server: Callable[..., RedisServer]) -> None:
    """Two hubs (two "processes") on one Redis, ASGI send callables as
    subscribers: live delivery across hubs, and a resume after an id that
    replays what was missed (the WebSocket side is tests/hub/test_hub.py's)."""
    from wsfast.hub import Hub

    server = redis_server()
    url = url_of(server, "streams")

    async def main() -> None:
        live: list[dict[str, object]] = []
        resumed: list[dict[str, object]] = []

        async def send_live(message: dict[str, object]) -> None:
            live.append(message)

        async def send_resumed(message: dict[str, object]) -> None:
            resumed.append(message)

        async with Hub(url) as h1, Hub(url) as h2:
            await h1.subscribe(send_live, "room")
            first = await h2.publish("room", "one")
            await eventually(lambda: live, timeout=5)
            assert live == [{"type": "websocket.send", "text": "one"}]
            await h2.publish("room", b"two")
            await h2.publish("room", "three")
            assert first is not None
            await h1.subscribe(send_resumed, "room", last_id=first)
            await eventually(lambda: len(resumed) == 2 and len(live) == 3, timeout=5)
            assert resumed == [{"type": "websocket.send", "bytes": b"two"}, {"type": "websocket.send", "text": "three"}]

    run(main(), timeout=15)
