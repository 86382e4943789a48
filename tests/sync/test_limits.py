"""The threading server's limits (``max_connections``, ``max_handshakes``)
and the bound on automatic pongs while a writer is stuck on a peer that
pings and does not read."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from typing import Iterator

import pytest

from wsfast.codec import FrameReader
from wsfast.exceptions import ConnectionClosed, InvalidHandshake
from wsfast.http11 import Response
from wsfast.sync import WebSocket, connect

from .helpers import TIMEOUT, RawServer, frame, in_thread, running, uri, wait_until


def hold(ws: WebSocket) -> None:
    """A handler that keeps the connection open until the client closes it."""
    for _ in ws:
        pass


def silent_sockets(port: int, count: int) -> list[socket.socket]:
    """TCP connections that never send their upgrade request."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.settimeout(TIMEOUT)
        socks.append(sock)
    return socks


def test_max_connections_503_with_retry_after() -> None:
    with running(hold, max_connections=2) as server:
        silent = silent_sockets(server.port, 3)  # not counted: no upgrade request
        try:
            with connect(uri(server)), connect(uri(server)):
                with pytest.raises(InvalidHandshake) as info:
                    connect(uri(server))
                response = info.value.response
                assert isinstance(response, Response) and response.status == 503
                assert response.headers.get("Retry-After") == "1"
            wait_until(lambda: not server.connections)
            with connect(uri(server)):  # room again
                pass
        finally:
            for sock in silent:
                sock.close()


def test_max_handshakes_drops_the_oldest() -> None:
    with running(hold, max_handshakes=2) as server:
        first, second, third = silent_sockets(server.port, 3)
        try:
            assert first.recv(1) == b""  # dropped when the third came
            with connect(uri(server)) as ws:  # its request arrives: counted until then, dropping the second
                ws.send("hello")
            assert second.recv(1) == b""
            third.settimeout(0.2)
            with pytest.raises(socket.timeout):
                third.recv(1)
        finally:
            for sock in (first, second, third):
                sock.close()


def test_max_handshakes_counts_tls_handshakes(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    with running(hold, max_handshakes=1, ssl=server_ssl) as server:
        (silent,) = silent_sockets(server.port, 1)  # never starts its TLS handshake
        try:
            with connect(uri(server, scheme="wss"), ssl=client_ssl):
                pass
            assert silent.recv(1) == b""
        finally:
            silent.close()


@contextlib.contextmanager
def stuck_writer(ws: WebSocket, size: int) -> Iterator[list[object]]:
    """A thread sending ``size`` bytes that the peer does not read."""
    thread, outcome = in_thread(lambda: ws.send(os.urandom(size)))
    try:
        wait_until(lambda: ws._write_lock.locked() and not ws._out)
        yield outcome
    finally:
        thread.join(TIMEOUT)


def queued_bytes(ws: WebSocket) -> int:
    """Bytes waiting to be written: the connection's queue and the core's."""
    return sum(map(len, ws._out)) + sum(map(len, ws.conn._out))


def test_pongs_bounded_while_a_writer_is_stuck() -> None:
    """A peer floods pings and does not read while a thread is stuck
    writing: the pongs waiting stay within write_limit plus one pong, and
    the latest ping is answered once the peer reads."""
    raw = RawServer()
    limit = 4096
    big = 32 * 1024 * 1024  # more than the socket buffers hold
    try:
        thread, accepted = in_thread(raw.accept)
        ws = connect(f"ws://127.0.0.1:{raw.port}/", write_limit=limit, close_timeout=1)
        thread.join(TIMEOUT)
        peer = accepted[0]
        assert isinstance(peer, socket.socket)
        with stuck_writer(ws, big) as sent:
            pings = [i.to_bytes(4, "big") * 31 for i in range(3000)]  # 124-byte payloads
            peer.sendall(b"".join(frame(0x9, payload) for payload in pings) + frame(0x1, b"done"))
            assert ws.recv(TIMEOUT) == "done"  # every ping before it was read
            assert queued_bytes(ws) <= limit + 130 < 390_000  # 390,000: the 3000 pongs
            # The peer reads at last: the big message, then the pongs kept.
            reader = FrameReader(big + 1, True)
            frames: list[tuple[int, bool, int, bytes]] = []
            while not any(opcode == 0xA and payload == pings[-1] for opcode, _, _, payload in frames):
                data = peer.recv(1 << 20)
                assert data
                frames += reader.feed(data)
        assert sent == [None]
        pongs = [payload for opcode, _, _, payload in frames if opcode == 0xA]
        assert frames[0][0] == 0x2 and len(frames[0][3]) == big
        assert len(pongs) <= limit // 130 + 2 and pongs[-1] == pings[-1]
        ws.close()
    finally:
        raw.close()


def test_pongs_still_answered_at_once() -> None:
    """Without a stuck writer, each ping gets its pong."""
    raw = RawServer()
    try:
        thread, accepted = in_thread(raw.accept)
        ws = connect(f"ws://127.0.0.1:{raw.port}/", close_timeout=1)
        thread.join(TIMEOUT)
        peer = accepted[0]
        assert isinstance(peer, socket.socket)
        for i in range(3):
            peer.sendall(frame(0x9, bytes([i])))
            assert raw.read_frame() == (0xA, bytes([i]))
        with pytest.raises(ConnectionClosed):
            peer.close()
            ws.recv(TIMEOUT)
    finally:
        raw.close()
