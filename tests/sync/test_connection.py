"""wsfast.sync.WebSocket: messages both ways, limits, timeouts, threads,
keepalive and closing, over real sockets on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from typing import Any

import pytest

from wsfast.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from wsfast.extensions import PerMessageDeflate
from wsfast.protocol import State
from wsfast.sync import WebSocket, connect
from wsfast.sync.connection import MESSAGE_OVERHEAD, READ_SIZE

from .helpers import TIMEOUT, RawServer, close_code, frame, in_thread, running, uri


def test_echo_text_and_binary() -> None:
    with running() as server, connect(uri(server), open_timeout=TIMEOUT) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=TIMEOUT) == "héllo"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=TIMEOUT) == b"\x00\xff"
        ws.send(bytearray(b"ba"))
        assert ws.recv(timeout=TIMEOUT) == b"ba"
        assert ws.state is State.OPEN
    assert ws.close_code == 1000
    assert ws.state.name == "CLOSED"


def test_fragments() -> None:
    with running() as server, connect(uri(server)) as ws:
        ws.send(["a", "é", "c"])
        assert ws.recv(timeout=TIMEOUT) == "aéc"
        ws.send(iter([b"x" * 70000, b"y", b"z" * 3]))
        assert ws.recv(timeout=TIMEOUT) == b"x" * 70000 + b"yzzz"
        ws.send([])  # nothing to send
        with pytest.raises(TypeError):
            ws.send(["a", b"b"])
        ws.send("still usable")
        assert ws.recv(timeout=TIMEOUT) == "still usable"


def test_large_messages() -> None:
    big = os.urandom(4 * 1024 * 1024)
    with running(max_message_size=8 * 1024 * 1024) as server:
        with connect(uri(server), max_message_size=8 * 1024 * 1024) as ws:
            for _ in range(3):
                ws.send(big)
                assert ws.recv(timeout=TIMEOUT) == big
            ws.send(big.hex()[: 3 * 1024 * 1024])
            assert ws.recv(timeout=TIMEOUT) == big.hex()[: 3 * 1024 * 1024]


def test_deflate() -> None:
    text = '{"price": 12.5, "side": "buy"}' * 1000
    with running() as server, connect(uri(server), deflate=PerMessageDeflate(compress_threshold=0)) as ws:
        assert ws.conn.deflate is not None
        assert ws.response is not None
        assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        for _ in range(5):
            ws.send(text)
            assert ws.recv(timeout=TIMEOUT) == text
        ws.send(["ab", "cd"])
        assert ws.recv(timeout=TIMEOUT) == "abcd"


def test_subprotocols() -> None:
    with running(subprotocols=["v2", "v1"]) as server:
        with connect(uri(server), subprotocols=["v1", "v2"]) as ws:
            assert ws.subprotocol == "v2"
        with connect(uri(server), subprotocols=["v1"]) as ws:
            assert ws.subprotocol == "v1"
        with connect(uri(server)) as ws:
            assert ws.subprotocol is None


def test_max_message_size_closes_1009() -> None:
    with running(max_message_size=1000) as server, connect(uri(server)) as ws:
        ws.send(b"x" * 1000)
        assert ws.recv(timeout=TIMEOUT) == b"x" * 1000
        ws.send(b"x" * 1001)
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=TIMEOUT)
        assert info.value.code == 1009


def test_client_max_message_size() -> None:
    def handler(ws: WebSocket) -> None:
        ws.send(b"y" * 2000)
        ws.recv(timeout=TIMEOUT)

    with running(handler) as server, connect(uri(server), max_message_size=1000) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=TIMEOUT)
        assert info.value.sent == (1009, "message larger than max_message_size=1000")


def test_recv_timeout_leaves_the_connection_usable() -> None:
    with running() as server, connect(uri(server)) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.05)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0)
        ws.send("after")
        assert ws.recv(timeout=TIMEOUT) == "after"


def test_close_from_another_thread_wakes_recv() -> None:
    with running() as server, connect(uri(server)) as ws:
        thread, outcome = in_thread(lambda: ws.recv(timeout=TIMEOUT))
        ws.ping().wait(TIMEOUT)  # the reader is in recv (or about to be)
        ws.close()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        assert isinstance(outcome[0], ConnectionClosedOK)
        assert ws.close_code == 1000


def test_peer_close_wakes_recv() -> None:
    def handler(ws: WebSocket) -> None:
        ws.recv(timeout=TIMEOUT)  # then return: close 1000

    with running(handler) as server, connect(uri(server)) as ws:
        thread, outcome = in_thread(lambda: ws.recv(timeout=TIMEOUT))
        ws.send("bye")
        thread.join(TIMEOUT)
        assert isinstance(outcome[0], ConnectionClosedOK)
        assert list(ws) == []  # iteration ends at a normal close
        with pytest.raises(ConnectionClosedOK):
            ws.send("too late")


def test_dropped_connection_wakes_recv() -> None:
    raw = RawServer()
    try:
        thread, outcome = in_thread(lambda: connect(f"ws://127.0.0.1:{raw.port}/"))
        sock = raw.accept()
        thread.join(TIMEOUT)
        ws = outcome[0]
        assert isinstance(ws, WebSocket)
        reader, result = in_thread(lambda: ws.recv(timeout=TIMEOUT))
        sock.close()
        reader.join(TIMEOUT)
        assert isinstance(result[0], ConnectionClosedError)
        assert result[0].code == 1006
        ws.close()
    finally:
        raw.close()


@pytest.mark.parametrize("deflate", [None, PerMessageDeflate(compress_threshold=0)], ids=["plain", "deflate"])
def test_concurrent_senders(deflate: Any) -> None:
    threads, per_thread = 8, 100
    with running() as server, connect(uri(server), deflate=deflate) as ws:

        def sender(n: int) -> None:
            for i in range(per_thread):
                body = os.urandom(1 + (n * 997 + i * 131) % 5000)
                if i % 3 == 0:
                    ws.send(body.hex() + "|" + hashlib.sha256(body.hex().encode()).hexdigest())
                elif i % 3 == 1:
                    ws.send(body + hashlib.sha256(body).digest())
                else:
                    ws.send([body[:10], body[10:] + hashlib.sha256(body).digest()])

        workers = [threading.Thread(target=sender, args=(n,), daemon=True) for n in range(threads)]
        for worker in workers:
            worker.start()
        for _ in range(threads * per_thread):
            message = ws.recv(timeout=TIMEOUT)
            if isinstance(message, str):
                body_hex, digest = message.split("|")
                assert hashlib.sha256(body_hex.encode()).hexdigest() == digest
            else:
                assert hashlib.sha256(message[:-32]).digest() == message[-32:]
        for worker in workers:
            worker.join(TIMEOUT)
            assert not worker.is_alive()


def test_ping_latency() -> None:
    with running() as server, connect(uri(server)) as ws:
        latency = ws.ping().wait(TIMEOUT)
        assert latency >= 0.0
        assert ws.latency == latency
        waiter = ws.ping(b"custom")
        assert waiter.wait(TIMEOUT) >= 0.0 and waiter.done()


def test_keepalive_timeout_closes_1011() -> None:
    raw = RawServer()
    try:
        thread, outcome = in_thread(
            lambda: connect(f"ws://127.0.0.1:{raw.port}/", ping_interval=0.1, ping_timeout=0.1, close_timeout=1)
        )
        raw.accept()
        thread.join(TIMEOUT)
        ws = outcome[0]
        assert isinstance(ws, WebSocket)
        opcode, _ = raw.read_frame()
        assert opcode == 0x9  # the keepalive ping, never answered
        opcode, payload = raw.read_frame()
        assert opcode == 0x8 and close_code(payload) == 1011
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=TIMEOUT)  # the peer never answers the close: close_timeout
        assert info.value.sent == (1011, "keepalive ping timeout")
    finally:
        raw.close()


def test_keepalive_answered() -> None:
    with running(ping_interval=0.05, ping_timeout=1) as server:
        with connect(uri(server), ping_interval=0.05, ping_timeout=1) as ws:
            for _ in range(5):
                ws.send("x")
                assert ws.recv(timeout=TIMEOUT) == "x"
                with pytest.raises(TimeoutError):
                    ws.recv(timeout=0.1)  # pings both ways meanwhile
            assert ws.state is State.OPEN


def test_pings_answered_while_nobody_reads() -> None:
    raw = RawServer()
    try:
        thread, outcome = in_thread(lambda: connect(f"ws://127.0.0.1:{raw.port}/", ping_interval=None))
        sock = raw.accept()
        thread.join(TIMEOUT)
        ws = outcome[0]
        sock.sendall(frame(0x9, b"are you there"))
        assert raw.read_frame() == (0xA, b"are you there")
        sock.sendall(frame(0x1, b"queued") + frame(0x8, b"\x03\xe8"))
        assert raw.read_frame() == (0x8, b"\x03\xe8")  # the close answered at once too
        sock.close()
        assert ws.recv(timeout=TIMEOUT) == "queued"
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=TIMEOUT)
    finally:
        raw.close()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x1, b"hi", rsv=4), 1002),  # reserved bit without an extension
        (frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8
        (frame(0x9, b"x" * 126), 1002),  # control frame too long
        (frame(0x0, b"orphan"), 1002),  # continuation without a message
        (frame(0x8, b"\x03\xe8\xff"), 1007),  # invalid UTF-8 in a close reason
    ],
)
def test_bad_input_gets_the_right_close_code(data: bytes, code: int) -> None:
    raw = RawServer()
    try:
        thread, outcome = in_thread(lambda: connect(f"ws://127.0.0.1:{raw.port}/", close_timeout=1))
        sock = raw.accept()
        thread.join(TIMEOUT)
        ws = outcome[0]
        sock.sendall(frame(0x2, b"before") + data)
        assert ws.recv(timeout=TIMEOUT) == b"before"
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=TIMEOUT)
        opcode, payload = raw.read_frame()
        assert opcode == 0x8 and close_code(payload) == code
    finally:
        raw.close()


def test_reply_before_held_failure() -> None:
    """A message then a bad frame in one read: the reply to the message goes
    out before the close frame (fail_timeout)."""
    raw = RawServer()
    try:
        thread, outcome = in_thread(lambda: connect(f"ws://127.0.0.1:{raw.port}/", close_timeout=1))
        sock = raw.accept()
        thread.join(TIMEOUT)
        ws = outcome[0]
        sock.sendall(frame(0x1, b"echo me") + frame(0x0, b"orphan"))
        ws.send(ws.recv(timeout=TIMEOUT))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        assert raw.read_frame() == (0x1, b"echo me")
        opcode, payload = raw.read_frame()
        assert opcode == 0x8 and close_code(payload) == 1002
    finally:
        raw.close()


def test_close_code_and_reason() -> None:
    received: list[Any] = []

    def handler(ws: WebSocket) -> None:
        try:
            ws.recv(timeout=TIMEOUT)
        except ConnectionClosed as exc:
            received.append((exc.code, exc.reason))

    with running(handler) as server:
        ws = connect(uri(server))
        ws.close(4000, "done here")
        ws.close()  # idempotent
        assert ws.close_code == 4000 and ws.close_reason == ""  # the server echoes the code only
    assert received == [(4000, "done here")]


def test_text_as_bytes() -> None:
    with running() as server, connect(uri(server), text_as_bytes=True) as ws:
        ws.send("é")
        assert ws.recv(timeout=TIMEOUT) == "é".encode()


def test_send_types() -> None:
    with running() as server, connect(uri(server)) as ws:
        with pytest.raises(TypeError):
            ws.send({"a": 1})
        with pytest.raises(TypeError):
            ws.send(42)  # type: ignore[arg-type]


def test_max_queue_bounds_reading_while_nobody_reads() -> None:
    """Nobody in recv: the housekeeping thread reads (and queues) only up to
    max_queue (plus one read); every message is still delivered, in order."""
    count, size, limit = 300, 1000, 20000

    def handler(ws: WebSocket) -> None:
        for i in range(count):
            ws.send(i.to_bytes(4, "big") + b"x" * (size - 4))
        ws.recv(timeout=TIMEOUT)

    with running(handler) as server, connect(uri(server), max_queue=limit) as ws:
        deadline = time.monotonic() + TIMEOUT
        while ws._queued <= limit and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the housekeeping thread stopped reading: the queue stays bounded
        assert limit < ws._queued <= limit + READ_SIZE + MESSAGE_OVERHEAD * (READ_SIZE // size + 1)
        for i in range(count):
            assert ws.recv(timeout=TIMEOUT)[:4] == i.to_bytes(4, "big")
        ws.send("done")


def test_close_unblocks_a_sender_stuck_on_a_peer_that_does_not_read() -> None:
    raw = RawServer()
    try:
        thread, outcome = in_thread(lambda: connect(f"ws://127.0.0.1:{raw.port}/", close_timeout=0.3))
        sock = raw.accept()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        thread.join(TIMEOUT)
        ws = outcome[0]
        chunk = b"z" * 1_000_000

        def flood() -> None:
            for _ in range(1000):  # far more than the socket buffers hold
                ws.send(chunk)

        sender, result = in_thread(flood)
        sender.join(0.3)
        assert sender.is_alive()  # blocked in sendall
        ws.close()
        sender.join(TIMEOUT)
        assert not sender.is_alive()
        assert isinstance(result[0], ConnectionClosed)
        assert ws.close_code == 1006
    finally:
        raw.close()


def test_two_readers_share_the_messages() -> None:
    with running() as server, connect(uri(server)) as ws:
        got: list[Any] = []

        def read() -> None:
            for _ in range(50):
                got.append(ws.recv(timeout=TIMEOUT))

        readers = [in_thread(read) for _ in range(2)]
        for i in range(100):
            ws.send(str(i))
        for reader, outcome in readers:
            reader.join(TIMEOUT)
            assert not reader.is_alive() and not isinstance(outcome[0], BaseException)
        assert sorted(got, key=int) == [str(i) for i in range(100)]
