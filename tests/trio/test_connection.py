"""wsfast.trio connections: messages both ways, limits, closing, keepalive."""

from __future__ import annotations

import os
import ssl

import pytest
import trio
import trio.testing

import wsfast.trio
from wsfast.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from wsfast.extensions import PerMessageDeflate
from wsfast.trio.connection import MESSAGE_OVERHEAD, READ_SIZE

from ..asyncio.helpers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    close_payload,
    frame,
    parse_close,
    upgrade_request,
)
from .helpers import RawPeer, raw_server, run, server


def uri(srv: wsfast.trio.Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{srv.port}{path}"


def test_echo_text_binary_fragmented_large() -> None:
    big = os.urandom(3 * 1048576)

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, max_message_size=4 * 1048576)
            async with wsfast.trio.connect(uri(srv), max_message_size=4 * 1048576) as ws:
                await ws.send("héllo")
                assert await ws.recv() == "héllo"
                await ws.send(b"\x00\xff")
                assert await ws.recv() == b"\x00\xff"
                await ws.send(bytearray(b"ba"))
                assert await ws.recv() == b"ba"
                await ws.send(["frag", "men", "ted"])
                assert await ws.recv() == "fragmented"

                async def parts():  # type: ignore[no-untyped-def]
                    yield b"a" * 70000
                    yield b"b"

                await ws.send(parts())
                assert await ws.recv() == b"a" * 70000 + b"b"
                await ws.send(big)
                assert await ws.recv() == big
                await ws.send("x" * 100000)
                assert await ws.recv() == "x" * 100000
                assert ws.subprotocol is None
                assert ws.request is not None and ws.response is not None and ws.response.status == 101
                assert ws.remote_address[1] == srv.port
                assert ws.close_code is None
                latency = await ws.ping()
                assert latency >= 0 and ws.latency == latency
                await ws.pong(b"unsolicited")
            assert ws.close_code == 1000
            with pytest.raises(ConnectionClosedOK):
                await ws.recv()
            with pytest.raises(ConnectionClosed):
                await ws.send("late")
            nursery.cancel_scope.cancel()

    run(test)


def test_async_for_ends_on_normal_close_and_text_as_bytes() -> None:
    async def handler(ws: wsfast.trio.WebSocket) -> None:
        for i in range(3):
            await ws.send(f"m{i}")

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, handler)
            async with wsfast.trio.connect(uri(srv), text_as_bytes=True) as ws:
                assert [m async for m in ws] == [b"m0", b"m1", b"m2"]
                assert ws.close_code == 1000
            nursery.cancel_scope.cancel()

    run(test)


def test_deflate_negotiated_and_used() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery)
            async with wsfast.trio.connect(uri(srv)) as ws:
                assert ws.response is not None
                assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
                assert ws.conn.deflate is not None
                text = "compressible " * 20000
                await ws.send(text)
                assert await ws.recv() == text
            async with wsfast.trio.connect(uri(srv), deflate=None) as ws:
                assert ws.conn.deflate is None
                await ws.send("plain")
                assert await ws.recv() == "plain"
            nursery.cancel_scope.cancel()

    run(test)


def test_deflate_every_message() -> None:
    deflate = PerMessageDeflate(compress_threshold=0)

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, deflate=deflate)
            async with wsfast.trio.connect(uri(srv), deflate=deflate) as ws:
                for message in ("a", b"b" * 100, "c" * 70000):
                    await ws.send(message)
                    assert await ws.recv() == message
            nursery.cancel_scope.cancel()

    run(test)


def test_subprotocols() -> None:
    async def handler(ws: wsfast.trio.WebSocket) -> None:
        await ws.send(ws.subprotocol or "none")

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, handler, subprotocols=["chat.v2", "chat.v1"])
            async with wsfast.trio.connect(uri(srv), subprotocols=["chat.v1", "chat.v2"]) as ws:
                assert ws.subprotocol == "chat.v2"
                assert await ws.recv() == "chat.v2"
            async with wsfast.trio.connect(uri(srv), subprotocols=["other"]) as ws:
                assert ws.subprotocol is None
                assert await ws.recv() == "none"
            nursery.cancel_scope.cancel()

    run(test)


def test_oversize_message_closes_1009() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, max_message_size=1000)
            async with wsfast.trio.connect(uri(srv)) as ws:
                await ws.send(b"x" * 1001)
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1009
            # and as a client (deflate=None: with permessage-deflate negotiated, the protocol core
            # lets an uncompressed single-frame message exceed the limit by up to 1/16 + 64 bytes)
            async with wsfast.trio.connect(uri(srv), max_message_size=10, deflate=None) as ws:
                await ws.send(b"y" * 11)
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.sent is not None and info.value.sent[0] == 1009
            nursery.cancel_scope.cancel()

    run(test)


@pytest.mark.parametrize(
    "frames, code",
    [
        ([(OP_TEXT, b"\xff\xfe", True)], 1007),
        ([(OP_CONT, b"x", True)], 1002),
        ([(0x3, b"", True)], 1002),
        ([(OP_PING, b"p" * 126, True)], 1002),
        ([(OP_TEXT, b"a", False), (OP_TEXT, b"b", True)], 1002),
        ([(OP_CLOSE, b"\x03", True)], 1002),
        ([(OP_CLOSE, close_payload(1005), True)], 1002),
    ],
)
def test_bad_input_gets_the_right_close_code(frames: list[tuple[int, bytes, bool]], code: int) -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery)
            peer = await RawPeer.connect(srv.port)
            assert peer.status == 101
            for opcode, payload, fin in frames:
                await peer.send(opcode, payload, fin)
            _, _, payload = await peer.recv_until(OP_CLOSE)
            assert parse_close(payload)[0] == code
            assert await peer.at_eof()  # the server closes the TCP connection
            nursery.cancel_scope.cancel()

    run(test)


def test_messages_before_a_protocol_error_are_answered_first() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery)
            peer = await RawPeer.connect(srv.port)
            # one write: a message, then a reserved opcode
            await peer.stream.send_all(frame(OP_TEXT, b"first") + frame(0x5, b""))
            assert await peer.recv() == (OP_TEXT, True, b"first")
            _, _, payload = await peer.recv()
            assert parse_close(payload)[0] == 1002
            nursery.cancel_scope.cancel()

    run(test)


def test_a_slow_handler_still_answers_the_messages_before_a_protocol_error() -> None:
    async def slow_echo(ws: wsfast.trio.WebSocket) -> None:
        async for message in ws:
            await trio.sleep(0.05)
            await ws.send(message)

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, slow_echo)
            peer = await RawPeer.connect(srv.port)
            await peer.stream.send_all(frame(OP_TEXT, b"one") + frame(OP_TEXT, b"two") + frame(OP_TEXT, b"\xc3"))
            assert await peer.recv() == (OP_TEXT, True, b"one")
            assert await peer.recv() == (OP_TEXT, True, b"two")
            _, _, payload = await peer.recv()
            assert parse_close(payload)[0] == 1007
            assert await peer.at_eof()
            nursery.cancel_scope.cancel()

    run(test)


def test_close_codes_both_ways() -> None:
    async def handler(ws: wsfast.trio.WebSocket) -> None:
        message = await ws.recv()
        if message == "close 4000":
            await ws.close(4000, "bye")
        else:
            await ws.recv()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, handler)
            async with wsfast.trio.connect(uri(srv)) as ws:
                await ws.send("close 4000")
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert (info.value.code, info.value.reason) == (4000, "bye")
                assert (ws.close_code, ws.close_reason) == (4000, "bye")
            async with wsfast.trio.connect(uri(srv)) as ws:
                await ws.send("stay")
                await ws.close(3001, "client says")
                assert ws.close_code == 3001  # echoed by the server
            nursery.cancel_scope.cancel()

    run(test)


def test_keepalive_timeout_closes_1011() -> None:
    """Against a peer that never answers pings."""
    closes: list[int] = []

    async def no_pong(peer: RawPeer) -> None:
        await peer.accept()
        try:
            while True:
                opcode, _, payload = await peer.recv()
                if opcode == OP_CLOSE:
                    closes.append(parse_close(payload)[0])
                    await peer.send(OP_CLOSE, payload[:2])
                    return
        except EOFError:
            pass

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, no_pong, mask=False)
            async with wsfast.trio.connect(f"ws://127.0.0.1:{port}/", ping_interval=0.05, ping_timeout=0.1) as ws:
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.sent is not None and info.value.sent[0] == 1011
            assert closes == [1011]
            nursery.cancel_scope.cancel()

    run(test)


def test_keepalive_answered_keeps_the_connection() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery)
            async with wsfast.trio.connect(uri(srv), ping_interval=0.02, ping_timeout=1) as ws:
                await trio.sleep(0.2)  # about ten keepalive rounds
                await ws.send("still here")
                assert await ws.recv() == "still here"
                assert ws.latency > 0
            assert ws.close_code == 1000
            nursery.cancel_scope.cancel()

    run(test)


def test_pings_are_answered_and_a_close_reply_ends_it() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery)
            peer = await RawPeer.connect(srv.port)
            await peer.send(OP_PING, b"hi")
            assert await peer.recv() == (OP_PONG, True, b"hi")
            await peer.send(OP_BINARY, b"bin")
            assert await peer.recv() == (OP_BINARY, True, b"bin")
            await peer.send(OP_CLOSE, close_payload(1000))
            _, _, payload = await peer.recv()
            assert parse_close(payload) == (1000, "")
            assert await peer.at_eof()
            nursery.cancel_scope.cancel()

    run(test)


def test_max_queue_backpressure_bounds_the_queue_and_delivers_everything_in_order() -> None:
    """A handler that does not read for a while: the server stops reading
    once ``max_queue`` is exceeded (by one read at most), then catches up."""
    received: list[bytes] = []
    queued: list[int] = []
    count = 3000

    async def slow(ws: wsfast.trio.WebSocket) -> None:
        await trio.sleep(0.2)
        async for message in ws:
            queued.append(ws._queued)
            assert isinstance(message, bytes)
            received.append(message)
            if len(received) == count:
                await ws.send("done")

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, slow, max_queue=20000)
            async with wsfast.trio.connect(uri(srv), deflate=None) as ws:
                for i in range(count):
                    await ws.send(i.to_bytes(2, "big") * 500)
                assert await ws.recv() == "done"
            assert received == [i.to_bytes(2, "big") * 500 for i in range(count)]
            # one read of READ_SIZE bytes, in messages of 1,000 bytes and MESSAGE_OVERHEAD each
            assert max(queued) <= 20000 + READ_SIZE * (1000 + MESSAGE_OVERHEAD) // 1000
            nursery.cancel_scope.cancel()

    run(test)


def test_close_timeout_against_a_peer_that_never_answers_the_close() -> None:
    async def mute(peer: RawPeer) -> None:
        await peer.accept()
        await trio.sleep_forever()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            port = await raw_server(nursery, mute)
            async with wsfast.trio.connect(f"ws://127.0.0.1:{port}/", close_timeout=0.1) as ws:
                pass
            assert ws.close_code == 1006
            nursery.cancel_scope.cancel()

    run(test)


def test_concurrent_recv_is_refused() -> None:
    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery)
            async with wsfast.trio.connect(uri(srv)) as ws:
                async with trio.open_nursery() as inner:
                    inner.start_soon(ws.recv)
                    await trio.testing.wait_all_tasks_blocked()
                    with pytest.raises(trio.BusyResourceError):
                        await ws.recv()
                    inner.cancel_scope.cancel()
                with pytest.raises(TypeError):
                    await ws.send({"a": 1})  # type: ignore[arg-type]
            nursery.cancel_scope.cancel()

    run(test)


def test_concurrent_senders_keep_frames_whole_and_in_order() -> None:
    """Eight tasks sending on one connection (compressed and not): the send
    guard keeps every frame whole and each task's messages in order."""

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery)
            async with wsfast.trio.connect(uri(srv)) as ws:

                async def sender(k: int) -> None:
                    for i in range(100):
                        await ws.send(f"{k}:{i}:" + "x" * (i * 37 % 5000))

                async with trio.open_nursery() as senders:
                    for k in range(8):
                        senders.start_soon(sender, k)
                got: dict[str, list[int]] = {}
                for _ in range(800):
                    message = await ws.recv()
                    assert isinstance(message, str)
                    k, i, _ = message.split(":")
                    got.setdefault(k, []).append(int(i))
                assert got == {str(k): list(range(100)) for k in range(8)}
            nursery.cancel_scope.cancel()

    run(test)


def test_close_with_a_full_queue_and_no_close_timeout() -> None:
    """The reader paused on a full queue reads on once a close frame goes
    out, to see the closing handshake end (even with close_timeout=None)."""
    closed: list[int] = []

    async def close_without_reading(ws: wsfast.trio.WebSocket) -> None:
        while ws._queued <= 20000:
            await trio.sleep(0.01)
        await ws.close(4000, "full")
        closed.append(ws.conn.close_code)

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, close_without_reading, max_queue=20000, close_timeout=None)
            async with wsfast.trio.connect(uri(srv), deflate=None) as ws:
                with pytest.raises(ConnectionClosed):
                    for _ in range(100000):
                        await ws.send(b"z" * 1000)
            assert ws.close_code == 4000
            while srv.connections:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert closed == [4000]

    run(test)


def test_keepalive_ends_a_connection_whose_peer_reads_nothing() -> None:
    """The handler's send blocks (the peer reads nothing, and answers no
    ping): the keepalive cannot even write its ping; after ping_timeout and
    close_timeout the connection is aborted and the send raises."""
    outcome: list[str] = []

    async def flood(ws: wsfast.trio.WebSocket) -> None:
        try:
            while True:
                await ws.send(b"f" * 65536)
        except ConnectionClosed:
            outcome.append("closed")

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, flood, ping_interval=0.05, ping_timeout=0.1, close_timeout=0.1)
            peer = await RawPeer.connect(srv.port)  # never reads again
            while not srv.connections:
                await trio.sleep(0.01)
            while srv.connections:
                await trio.sleep(0.01)
            await peer.stream.aclose()
            nursery.cancel_scope.cancel()
        assert outcome == ["closed"]

    run(test)


@pytest.mark.parametrize("tls", [False, True])
def test_close_while_a_send_is_blocked_by_a_peer_that_reads_nothing(tls: bool, server_ssl: ssl.SSLContext) -> None:
    outcome: list[str] = []

    async def stuck(ws: wsfast.trio.WebSocket) -> None:
        async def send_forever() -> None:
            try:
                while True:
                    await ws.send(b"s" * 65536)
            except ConnectionClosed:
                outcome.append("send raised")

        async with trio.open_nursery() as senders:
            senders.start_soon(send_forever)
            await trio.sleep(0.1)  # the send is blocked by now
            await ws.close()
            outcome.append(f"closed {ws.close_code}")

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            srv = await server(nursery, stuck, ping_interval=None, close_timeout=0.1, ssl=server_ssl if tls else None)
            if tls:  # a TLS client that sends its upgrade request, then reads nothing
                client_ssl = ssl.create_default_context()
                client_ssl.check_hostname = False
                client_ssl.verify_mode = ssl.CERT_NONE
                stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", srv.port), client_ssl)
                await stream.send_all(upgrade_request()[0])
                peer = RawPeer(stream, mask=True)
            else:
                peer = await RawPeer.connect(srv.port)  # never reads again
            while not srv.connections:
                await trio.sleep(0.01)
            while srv.connections:
                await trio.sleep(0.01)
            await trio.aclose_forcefully(peer.stream)
            nursery.cancel_scope.cancel()
        assert sorted(outcome) == ["closed 1006", "send raised"]

    run(test)
