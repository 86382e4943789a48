"""The hub with its in-process backend (memory://), end to end: wsfast
servers on 127.0.0.1 and real clients; subscriptions, framing once, resume
after an id, slow consumers, bad input. The Redis backends have their own
tests (test_redis.py) and the hub over Redis its own (test_hub_redis.py)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Optional

import pytest

from wsfast.asyncio import Listener, WebSocket, WebSocketTransport, connect, create_server, serve
from wsfast.exceptions import ConnectionClosed
from wsfast.hub import SLOW_CLOSE_CODE, Hub, HubClosed, Subscription, parse_id

from ..asyncio.helpers import (
    OP_BINARY,
    OP_CLOSE,
    OP_TEXT,
    RawClient,
    eventually,
    parse_close,
    run,
    shrink_send_buffer,
    small_buffer_socket,
    upgrade_request,
)

KiB = 1024


def uri(server: Any, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


class Room:
    """A serve() handler: subscribes each connection to the channel named by
    the path (``/room?last_id=...`` resumes), publishes what it receives."""

    def __init__(self, hub: Hub, **subscribe: Any) -> None:
        self.hub = hub
        self.subscribe = subscribe
        self.subscriptions: list[Subscription] = []

    async def __call__(self, ws: WebSocket) -> None:
        assert ws.request is not None
        path, _, query = ws.request.target.partition("?")
        last_id = query.partition("last_id=")[2] or None
        sub = await self.hub.subscribe(ws, path.strip("/"), last_id=last_id, **self.subscribe)
        self.subscriptions.append(sub)
        async for message in ws:
            await self.hub.publish(path.strip("/"), message)


async def recv_all(ws: Any, count: int, timeout: float = 5.0) -> list[Any]:
    return [await asyncio.wait_for(ws.recv(), timeout) for _ in range(count)]


# ---------------------------------------------------------------- delivery


def test_publish_reaches_every_subscriber_of_the_channel_and_no_other() -> None:
    async def main() -> None:
        async with Hub() as hub, serve(Room(hub), "127.0.0.1", 0) as server:
            a = [await connect(uri(server, "/a")) for _ in range(5)]
            b = [await connect(uri(server, "/b")) for _ in range(3)]
            await eventually(lambda: len(hub._channels.get("a", ())) == 5 and len(hub._channels.get("b", ())) == 3)
            await hub.publish("a", "hello a")
            await hub.publish("a", b"\x00\x01binary")
            await hub.publish("b", "hello b")
            for ws in a:
                assert await recv_all(ws, 2) == ["hello a", b"\x00\x01binary"]
            for ws in b:
                assert await recv_all(ws, 1) == ["hello b"]
            # A message from a client goes through the hub to everyone in its room, itself included.
            await a[0].send("from a0")
            for ws in a:
                assert await ws.recv() == "from a0"
            assert hub.stats.published == 4
            assert hub.stats.delivered == 5 * 3 + 3
            for ws in a + b:
                await ws.close()

    run(main())


def test_order_is_kept_per_channel_across_many_messages() -> None:
    async def main() -> None:
        async with Hub() as hub, serve(Room(hub), "127.0.0.1", 0) as server:
            clients = [await connect(uri(server, "/seq")) for _ in range(10)]
            await eventually(lambda: len(hub._channels.get("seq", ())) == 10)
            for i in range(500):
                await hub.publish("seq", str(i))
            for ws in clients:
                assert await recv_all(ws, 500) == [str(i) for i in range(500)]
                await ws.close()
            assert hub.stats.dropped == 0

    run(main())


def test_callback_api_connections_subscribe_too() -> None:
    received: list[Any] = []

    class Client(Listener):
        def on_text(self, data: Any) -> None:
            received.append(data)

    async def main() -> None:
        async with Hub() as hub:
            opened: list[WebSocketTransport] = []

            class Sub(Listener):
                def on_open(self, transport: WebSocketTransport) -> None:
                    opened.append(transport)
                    asyncio.ensure_future(hub.subscribe(transport, "news"))

            async with create_server(lambda t, r: Sub(), "127.0.0.1", 0) as server:
                ws = await connect(uri(server))
                await eventually(lambda: "news" in hub.channels and len(hub._channels["news"]) == 1)
                await hub.publish("news", "extra")
                assert await ws.recv() == "extra"
                await ws.close()
                # The subscription ends with the connection.
                await eventually(lambda: "news" not in hub.channels)

    run(main())


def test_a_client_connection_can_subscribe_and_its_frames_are_masked() -> None:
    async def main() -> None:
        async with Hub() as hub, serve(_echo_to_hub(hub), "127.0.0.1", 0) as server:
            async with connect(uri(server)) as client:
                await hub.subscribe(client, "to-server")  # the client side forwards hub messages to the server
                await hub.publish("to-server", "via the client")
                assert await client.recv() == "echo: via the client"

    run(main())


def _echo_to_hub(hub: Hub) -> Any:
    async def handler(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(f"echo: {message}")

    return handler


def test_closed_connections_are_forgotten_and_the_channel_left() -> None:
    async def main() -> None:
        async with Hub() as hub, serve(Room(hub), "127.0.0.1", 0) as server:
            clients = [await connect(uri(server, "/gone")) for _ in range(3)]
            await eventually(lambda: len(hub._channels.get("gone", ())) == 3)
            for ws in clients:
                await ws.close()
            await eventually(lambda: "gone" not in hub.channels and "gone" not in hub._live)
            assert not hub._subscribers
            await hub.publish("gone", "nobody")
            assert hub.stats.delivered == 0

    run(main())


def test_a_mass_disconnect_leaves_each_emptied_channel_once() -> None:
    async def main() -> None:
        async with Hub() as hub, serve(Room(hub), "127.0.0.1", 0) as server:
            left: list[str] = []
            unsubscribe = hub._backend.unsubscribe

            async def counted(channel: str) -> None:
                left.append(channel)
                await unsubscribe(channel)

            hub._backend.unsubscribe = counted  # type: ignore[method-assign]
            clients = [await connect(uri(server, f"/user-{i % 20}")) for i in range(60)]
            await eventually(lambda: sum(len(subs) for subs in hub._channels.values()) == 60)
            await asyncio.gather(*(ws.close() for ws in clients))
            await eventually(lambda: not hub.channels and not hub._live and hub._leaving is None)
            assert sorted(left) == sorted(f"user-{i}" for i in range(20))  # each once

    run(main())


def test_unsubscribe_one_channel_or_all() -> None:
    async def main() -> None:
        async with Hub() as hub:
            subscribed: list[WebSocket] = []

            async def handler(ws: WebSocket) -> None:
                subscribed.append(ws)
                await hub.subscribe(ws, "x")
                await hub.subscribe(ws, "y")
                with pytest.raises(ValueError, match="already subscribed"):
                    await hub.subscribe(ws, "y")
                await ws.wait_closed()

            async with serve(handler, "127.0.0.1", 0) as server, connect(uri(server)) as ws:
                await eventually(lambda: len(hub.channels) == 2)
                await hub.unsubscribe(subscribed[0], "x")
                assert hub.channels == ["y"]
                await hub.publish("x", "not for you")
                await hub.publish("y", "for you")
                assert await ws.recv() == "for you"
                await hub.unsubscribe(subscribed[0])
                assert hub.channels == []
                await hub.publish("y", "not any more")
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.2)

    run(main())


def test_subscribers_joining_at_once_all_get_the_first_message() -> None:
    """encode/broadcaster lost the subscribers that arrived while its first
    SUBSCRIBE was in flight; here they wait for it."""

    async def main() -> None:
        async with Hub() as hub, serve(Room(hub), "127.0.0.1", 0) as server:
            clients = await asyncio.gather(*(connect(uri(server, "/burst")) for _ in range(50)))
            await eventually(lambda: len(hub._channels.get("burst", ())) == 50)
            await hub.publish("burst", "first")
            for ws in clients:
                assert await ws.recv() == "first"
                await ws.close()

    run(main())


def test_messages_of_one_turn_go_out_in_one_write_per_connection() -> None:
    async def main() -> None:
        async with Hub(max_delay=0) as hub, serve(Room(hub), "127.0.0.1", 0, own_transport=False) as server:
            clients = [await connect(uri(server, "/burst")) for _ in range(3)]
            await eventually(lambda: len(hub._channels.get("burst", ())) == 3)
            writes: list[int] = []
            for sub in hub._channels["burst"].values():
                transport = sub._target._transport
                write = transport.write
                transport.write = lambda data, write=write: (writes.append(len(data)), write(data))[1]
            for i in range(100):  # one turn of the loop
                await hub.publish("burst", f"m{i}")
            for ws in clients:
                assert await recv_all(ws, 100) == [f"m{i}" for i in range(100)]
            assert len(writes) == 3  # one per connection
            assert hub.stats.delivered == 300
            for ws in clients:
                await ws.close()

    run(main())


def test_under_load_messages_wait_at_most_max_delay_to_share_a_write() -> None:
    async def main() -> None:
        async with Hub(max_delay=0.2) as hub, serve(Room(hub), "127.0.0.1", 0, own_transport=False) as server:
            clients = [await connect(uri(server, "/load")) for _ in range(2)]
            await eventually(lambda: len(hub._channels.get("load", ())) == 2)
            writes: list[int] = []
            for sub in hub._channels["load"].values():
                transport = sub._target._transport
                write = transport.write
                transport.write = lambda data, write=write: (writes.append(len(data)), write(data))[1]
            await hub.publish("load", "first")  # nothing written lately: at the end of this turn
            for ws in clients:
                assert await ws.recv() == "first"
            assert len(writes) == 2
            for i in range(10):  # each in a turn of its own, within max_delay of the first write
                await hub.publish("load", f"m{i}")
                await asyncio.sleep(0)
            for ws in clients:
                assert await recv_all(ws, 10) == [f"m{i}" for i in range(10)]
            assert len(writes) == 4  # one more write per connection for the ten
            for ws in clients:
                await ws.close()
        with pytest.raises(ValueError, match="max_delay"):
            Hub(max_delay=-1)

    run(main())


def test_after_a_slow_round_of_writes_the_next_waits_as_long_to_carry_more() -> None:
    async def main() -> None:
        async with Hub(max_delay=0) as hub, serve(Room(hub), "127.0.0.1", 0, own_transport=False) as server:
            ws = await connect(uri(server, "/slow"))
            await eventually(lambda: "slow" in hub.channels)
            writes: list[int] = []
            (sub,) = hub._channels["slow"].values()
            transport = sub._target._transport
            write = transport.write

            def slow_write(data: bytes) -> None:
                writes.append(len(data))
                if len(writes) == 1:
                    time.sleep(0.2)  # a round of writes to many connections takes this long
                write(data)

            transport.write = slow_write
            await hub.publish("slow", "first")
            assert await ws.recv() == "first"
            for i in range(10):  # each in a turn of its own, while the last round's 0.2 s have not passed
                await hub.publish("slow", f"m{i}")
                await asyncio.sleep(0)
            assert await recv_all(ws, 10) == [f"m{i}" for i in range(10)]
            assert len(writes) == 2
            await ws.close()

    run(main())


# ---------------------------------------------------------------- ids and resuming


def test_json_envelope_carries_channel_and_id() -> None:
    async def main() -> None:
        async with Hub(envelope="json") as hub, serve(Room(hub), "127.0.0.1", 0) as server:
            async with connect(uri(server, "/env")) as ws:
                await eventually(lambda: "env" in hub.channels)
                id1 = await hub.publish("env", "héllo")
                id2 = await hub.publish("env", b"\xff\x00")
                assert id1 is not None and id2 is not None and parse_id(id1) < parse_id(id2)
                assert json.loads(await ws.recv()) == {"channel": "env", "id": id1, "data": "héllo"}
                assert json.loads(await ws.recv()) == {"channel": "env", "id": id2, "binary": "/wA="}

    run(main())


def test_each_subscription_may_have_its_own_envelope() -> None:
    async def main() -> None:
        raw: list[Any] = []
        enveloped: list[Any] = []
        async with Hub() as hub:
            await hub.subscribe(_record(raw), "mixed")
            await hub.subscribe(_record(enveloped), "mixed", envelope="json")
            with pytest.raises(ValueError, match="unknown envelope"):
                await hub.subscribe(_record(), "mixed", envelope="yaml")
            message_id = await hub.publish("mixed", "both")
            await eventually(lambda: len(raw) == len(enveloped) == 1)
            assert raw == [{"type": "websocket.send", "text": "both"}]
            assert json.loads(enveloped[0]["text"]) == {"channel": "mixed", "id": message_id, "data": "both"}

    run(main())


def test_a_client_resumes_after_its_last_id_with_nothing_missed_or_repeated() -> None:
    async def main() -> None:
        async with Hub(envelope="json") as hub, serve(Room(hub), "127.0.0.1", 0) as server:
            ws = await connect(uri(server, "/feed"))
            await eventually(lambda: "feed" in hub.channels)
            for i in range(10):
                await hub.publish("feed", f"m{i}")
            seen = [json.loads(m) for m in await recv_all(ws, 10)]
            await ws.close()
            last = seen[4]["id"]  # say the client only processed the first five
            for i in range(10, 15):  # published while it was away
                await hub.publish("feed", f"m{i}")
            ws = await connect(uri(server, f"/feed?last_id={last}"))
            got = [json.loads(m)["data"] for m in await recv_all(ws, 10)]
            assert got == [f"m{i}" for i in range(5, 15)]
            await hub.publish("feed", "live")
            assert json.loads(await ws.recv())["data"] == "live"
            assert not ws.transport.conn.state.name == "CLOSED"
            await ws.close()

    run(main())


def test_resume_while_messages_keep_coming_has_no_hole_and_no_repeat() -> None:
    async def main() -> None:
        async with Hub("memory://?maxlen=100000", envelope="json") as hub, serve(Room(hub), "127.0.0.1", 0) as server:
            watcher = await connect(uri(server, "/busy"))
            await eventually(lambda: "busy" in hub.channels)
            stop = asyncio.Event()
            count = 0

            async def publisher() -> None:
                nonlocal count
                while not stop.is_set() and count < 90000:  # within the log's 100,000
                    await hub.publish("busy", str(count))
                    count += 1
                    if count % 3 == 0:  # batches of three messages per turn of the loop
                        await asyncio.sleep(0)

            task = asyncio.ensure_future(publisher())
            first = json.loads(await watcher.recv())
            for _ in range(5):  # several resumes in the middle of the flow
                before = count
                ws = await connect(uri(server, f"/busy?last_id={first['id']}"))
                expected = int(first["data"]) + 1
                for _ in range(50):
                    message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    assert int(message["data"]) == expected
                    expected += 1
                assert count > before  # messages kept coming during the resume
                await ws.close()
            stop.set()
            await task
            await watcher.close()

    run(main(), timeout=30)


def test_resume_after_an_id_beyond_retention_says_missed() -> None:
    async def main() -> None:
        async with Hub("memory://?maxlen=5", envelope="json") as hub, serve(Room(hub), "127.0.0.1", 0) as server:
            first = await hub.publish("short", "0")
            for i in range(1, 20):
                await hub.publish("short", str(i))
            assert first is not None
            ws = await connect(uri(server, f"/short?last_id={first}"))
            got = [json.loads(m)["data"] for m in await recv_all(ws, 5)]
            assert got == [str(i) for i in range(15, 20)]
            await eventually(lambda: len(server_subscriptions(hub, "short")) == 1)
            assert server_subscriptions(hub, "short")[0].missed
            await ws.close()

    run(main())


def server_subscriptions(hub: Hub, channel: str) -> list[Subscription]:
    return list(hub._channels.get(channel, {}).values())


# ---------------------------------------------------------------- slow consumers


async def _slow_client(hub: Hub, port: int, path: str) -> tuple[RawClient, Subscription]:
    """A client that reads nothing, with small kernel buffers on both ends,
    so that what it does not read piles up in the server's transport."""
    sock = await small_buffer_socket(port, 4096)
    reader, writer = await asyncio.open_connection(sock=sock)
    request, _ = upgrade_request(path)
    writer.write(request)
    client = RawClient(reader, writer, await reader.readuntil(b"\r\n\r\n"))
    assert client.status == 101
    channel = path.strip("/")
    await eventually(
        lambda: any(s._target.remote_address == sock.getsockname() for s in server_subscriptions(hub, channel))
    )
    sub = next(s for s in server_subscriptions(hub, channel) if s._target.remote_address == sock.getsockname())
    shrink_send_buffer(sub._target._transport, 4096)
    return client, sub


@pytest.mark.parametrize("policy", ["drop", "close", "coalesce"])
def test_a_slow_consumer_is_bounded_and_does_not_hold_up_the_others(policy: str) -> None:
    message = "x" * (16 * KiB)
    max_pending = 64 * KiB

    async def main() -> None:
        hub = Hub(policy=policy, max_pending=max_pending)  # type: ignore[arg-type]
        room = Room(hub)
        async with hub, serve(room, "127.0.0.1", 0, own_transport=False) as server:
            slow, slow_sub = await _slow_client(hub, server.port, "/ticker")
            fast = await connect(uri(server, "/ticker"))
            await eventually(lambda: len(hub._channels.get("ticker", ())) == 2)
            slow_ws = slow_sub._target
            peak = 0
            for i in range(200):
                await hub.publish("ticker", f"{i:05d}{message}")
                assert (await asyncio.wait_for(fast.recv(), 5))[:5] == f"{i:05d}"  # never held up
                if slow_ws._transport is not None:
                    peak = max(peak, slow_ws._transport.get_write_buffer_size())
            # Never more than the bound plus one message waits for the slow one.
            assert peak <= max_pending + len(message) + 64
            if policy == "drop":
                assert hub.stats.dropped > 100 and slow_sub.dropped == hub.stats.dropped
            elif policy == "close":
                assert hub.stats.closed == 1
                assert slow_ws.conn.state.name in ("CLOSING", "CLOSED")
                subs = server_subscriptions(hub, "ticker")
                assert len(subs) == 1 and slow_sub not in subs
            else:
                assert hub.stats.coalesced > 100 and len(slow_sub._pending) == 1
                # Once it reads, it gets what was sent and then the latest message.
                last = None
                while True:
                    opcode, _, payload = await slow.recv(timeout=5)
                    assert opcode == OP_TEXT
                    last = payload[:5]
                    if last == b"00199":
                        break
                assert not slow_sub._pending
            slow.close()
            await fast.close()

    run(main(), timeout=30)


def test_close_policy_sends_1013_to_a_consumer_that_reads_again() -> None:
    async def main() -> None:
        hub = Hub(policy="close", max_pending=32 * KiB, max_delay=0)
        async with hub, serve(Room(hub), "127.0.0.1", 0, own_transport=False) as server:
            slow, _ = await _slow_client(hub, server.port, "/c")
            for _ in range(100):
                await hub.publish("c", "y" * 8 * KiB)
                await asyncio.sleep(0)  # the hub writes at the end of the loop's turn
                if hub.stats.closed:
                    break
            assert hub.stats.closed == 1
            code = None
            while code is None:
                opcode, _, payload = await slow.recv(timeout=5)
                if opcode == OP_CLOSE:
                    code = parse_close(payload)[0]
            assert code == SLOW_CLOSE_CODE
            slow.close()

    run(main(), timeout=30)


# ---------------------------------------------------------------- bad input


def test_closing_the_hub_writes_what_it_had_received() -> None:
    async def main() -> None:
        hub = Hub(max_delay=10)  # a round of writes would wait long
        async with serve(Room(hub), "127.0.0.1", 0) as server:
            await hub.start()
            ws = await connect(uri(server, "/last"))
            await eventually(lambda: "last" in hub.channels)
            await hub.publish("last", "one")
            assert await ws.recv() == "one"  # the first round goes at once
            await hub.publish("last", "two")  # the next would wait for max_delay
            await hub.close()
            assert await ws.recv() == "two"
            await ws.close()

    run(main())


def test_bad_input_gets_clear_errors() -> None:
    async def main() -> None:
        hub = Hub(max_message_size=1000)
        with pytest.raises(HubClosed, match="not started"):
            await hub.publish("c", "x")
        async with hub:
            for channel in ["", "a" * 257, "bad\nname", "tab\there"]:
                with pytest.raises(ValueError, match="invalid channel name"):
                    await hub.publish(channel, "x")
            with pytest.raises(TypeError, match="channel name is a str"):
                await hub.publish(b"bytes", "x")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="over the hub's max_message_size"):
                await hub.publish("c", "x" * 1001)
            with pytest.raises(TypeError, match="str or bytes"):
                await hub.publish("c", {"a": 1})  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="cannot subscribe"):
                await hub.subscribe(42, "c")
            with pytest.raises(ValueError, match="unknown policy"):
                await hub.subscribe(_record(), "c", policy="keep")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="not a message id"):
                await hub.subscribe(_record(), "c", last_id="yesterday")
            assert hub.channels == []  # nothing was left half-subscribed
            assert await hub.publish("c", "x" * 1000) is not None
        with pytest.raises(HubClosed, match="closed"):
            await hub.publish("c", "x")
        with pytest.raises(HubClosed):
            await hub.start()
        with pytest.raises(ValueError, match="unknown hub URL"):
            Hub("kafka://localhost")
        with pytest.raises(ValueError, match="does not know"):
            Hub("memory://?maxln=3")
        with pytest.raises(ValueError, match="unknown envelope"):
            Hub(envelope="xml")

    run(main())


def _record(sink: Optional[list[Any]] = None) -> Any:
    async def send(message: dict[str, Any]) -> None:
        if sink is not None:
            sink.append(message)

    return send


def test_asgi_send_callables_get_asgi_messages_in_order() -> None:
    async def main() -> None:
        got: list[Any] = []
        async with Hub() as hub:
            await hub.subscribe(_record(got), "asgi")
            await hub.publish("asgi", "one")
            await hub.publish("asgi", b"two")
            await eventually(lambda: len(got) == 2)
            assert got == [{"type": "websocket.send", "text": "one"}, {"type": "websocket.send", "bytes": b"two"}]

    run(main())


def test_a_failing_asgi_send_ends_its_subscription() -> None:
    async def main() -> None:
        async def gone(message: dict[str, Any]) -> None:
            raise ConnectionClosed(1006, "")

        async with Hub() as hub:
            await hub.subscribe(gone, "asgi")
            await hub.publish("asgi", "one")
            await eventually(lambda: "asgi" not in hub.channels)

    run(main())


def test_hub_delivers_binary_frames_to_raw_clients() -> None:
    async def main() -> None:
        async with Hub() as hub, serve(Room(hub), "127.0.0.1", 0) as server:
            raw = await RawClient.connect(server.port, "/bin")
            await eventually(lambda: "bin" in hub.channels)
            await hub.publish("bin", b"\x01\x02")
            opcode, fin, payload = await raw.recv()
            assert (opcode, fin, payload) == (OP_BINARY, True, b"\x01\x02")
            raw.close()

    run(main())
