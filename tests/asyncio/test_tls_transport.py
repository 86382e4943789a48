"""wsfast's TLS transport (:class:`wsfast.asyncio.tls.TLSTransport`) and
where it is used (:mod:`wsfast.asyncio.sockets`).

The transport tests run each case over a real TCP connection on 127.0.0.1
with real TLS (trustme certificates): once on wsfast's transport and once on
asyncio's SSL transport, which is the reference; both must behave alike.
wsfast's also runs on uvloop. The other end is :class:`Peer`, TLS driven by
hand (an ``ssl.SSLObject`` over memory BIOs on a plain socket), so that a test
controls exactly what the peer does: send close_notify or not, stop in the
middle of the handshake, reset the connection...

The TLS transport is written in Python: it runs with either codec, and so do
these tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import struct
import subprocess
import sys
from typing import Any, Callable, Optional

import pytest

import wsfast.asyncio.sockets as sockets_module
from wsfast.asyncio import WebSocketTransport, connect, create_connection, create_server, serve
from wsfast.asyncio.sockets import usable
from wsfast.asyncio.tls import TLSTransport
from wsfast.exceptions import ConnectionClosed

from .helpers import echo, eventually, run
from .test_sockets import Collect, Echo, loop_errors, loop_factory
from .test_sockets import Recorder as BaseRecorder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the TLS transport is POSIX only")

# (transport, event loop): asyncio's SSL transport is the reference.
CASES = [("wsfast", "asyncio"), ("asyncio", "asyncio"), ("wsfast", "uvloop")]

trustme = pytest.importorskip("trustme", reason="trustme is needed for the TLS tests")
CA = trustme.CA()
CERT = CA.issue_cert("127.0.0.1", "localhost")


def server_context(alpn: Optional[list[str]] = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    CERT.configure_cert(context)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def client_context(trusting: bool = True, alpn: Optional[list[str]] = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if trusting:
        CA.configure_trust(context)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


class Peer:
    """The other end: TLS by hand over a non-blocking socket."""

    def __init__(
        self, sock: socket.socket, context: ssl.SSLContext, server_side: bool, hostname: Optional[str]
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.sslobj = context.wrap_bio(self.incoming, self.outgoing, server_side=server_side, server_hostname=hostname)
        self.loop = asyncio.get_running_loop()
        self.closed_by_peer = False  # close_notify received
        self.eof = False  # TCP EOF received

    async def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            await self.loop.sock_sendall(self.sock, data)

    async def _more(self, timeout: float = 10.0) -> bool:
        data = await asyncio.wait_for(self.loop.sock_recv(self.sock, 1 << 20), timeout)
        if not data:
            self.eof = True
            return False
        self.incoming.write(data)
        return True

    async def handshake(self) -> None:
        while True:
            try:
                self.sslobj.do_handshake()
            except ssl.SSLWantReadError:
                await self.flush()
                if not await self._more():
                    raise ConnectionResetError("EOF during the handshake") from None
                continue
            await self.flush()
            return

    async def send(self, data: bytes) -> None:
        self.sslobj.write(data)
        await self.flush()

    async def recv(self, nbytes: int, timeout: float = 10.0) -> bytes:
        out = bytearray()
        while len(out) < nbytes:
            chunk = self._read()
            if chunk is None:
                if self.closed_by_peer or not await self._more(timeout):
                    break
                continue
            out += chunk
        return bytes(out)

    def _read(self) -> Optional[bytes]:
        try:
            chunk = self.sslobj.read(1 << 20)
        except ssl.SSLWantReadError:
            return None
        except ssl.SSLZeroReturnError:
            self.closed_by_peer = True
            return None
        if not chunk:
            self.closed_by_peer = True
            return None
        return chunk

    async def recv_until_closed(self, timeout: float = 10.0) -> bytes:
        """Everything until the other end's close_notify or TCP EOF."""
        out = bytearray()
        while not self.closed_by_peer:
            chunk = self._read()
            if chunk is not None:
                out += chunk
            elif not self.closed_by_peer and not await self._more(timeout):
                break
        return bytes(out)

    async def close_notify(self) -> None:
        try:
            self.sslobj.unwrap()
        except ssl.SSLWantReadError:
            pass
        await self.flush()


class Recorder(BaseRecorder):
    """Hands out its buffer as a memoryview: asyncio's SSL transport fills a
    bytearray buffer through slices of it (copies), losing all but the
    first TLS record of each read."""

    def get_buffer(self, sizehint: int) -> memoryview:  # type: ignore[override]
        return memoryview(self.buffer)


def open_fds() -> Optional[int]:
    """How many file descriptors this process has open (Linux), or ``None``."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def fd_closed(sock: socket.socket) -> bool:
    return sock.fileno() == -1


async def tcp_pair() -> tuple[socket.socket, socket.socket]:
    listening = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listening.getsockname())
    ours, _ = listening.accept()
    listening.close()
    peer.setblocking(False)
    return ours, peer


async def start(
    kind: str,
    protocol: Any,
    ours: socket.socket,
    *,
    server_side: bool,
    context: ssl.SSLContext,
    server_hostname: Optional[str] = None,
    **timeouts: Any,
) -> Any:
    """Our end of the connection on the transport of ``kind``, once its
    handshake succeeded; raises the handshake's error."""
    loop = asyncio.get_running_loop()
    if kind == "wsfast":
        if server_side:
            waiter = loop.create_future()
            transport = TLSTransport(loop, ours, protocol, context, server_side=True, waiter=waiter, **timeouts)
            try:
                await waiter
            except BaseException:
                transport.abort()
                raise
            return transport
        return await sockets_module.start_tls(
            loop, ours, protocol, context, server_hostname=server_hostname, **timeouts
        )
    if server_side:
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, ours, ssl=context, **timeouts)
    else:
        transport, _ = await loop.create_connection(
            lambda: protocol, sock=ours, ssl=context, server_hostname=server_hostname, **timeouts
        )
    return transport


async def pair(
    kind: str, protocol: Recorder, *, server_side: bool = True, **timeouts: Any
) -> tuple[Any, Peer, socket.socket]:
    """A TLS connection on 127.0.0.1: ours on the transport of ``kind`` (the
    server end by default), the other end a :class:`Peer`."""
    ours, peer_sock = await tcp_pair()
    if server_side:
        peer = Peer(peer_sock, client_context(), False, "localhost")
        ours_context = server_context()
    else:
        peer = Peer(peer_sock, server_context(), True, None)
        ours_context = client_context()
    transport, _ = await asyncio.gather(
        start(
            kind, protocol, ours, server_side=server_side, context=ours_context, server_hostname="localhost", **timeouts
        ),
        peer.handshake(),
    )
    await asyncio.wait_for(protocol.made.wait(), 5)
    return transport, peer, ours


def transport_case(body: Callable[[str], Any]) -> Any:
    """Run ``body(kind)`` for each of CASES."""

    @pytest.mark.parametrize("kind, loop", CASES)
    def test(kind: str, loop: str) -> None:
        run(body(kind), timeout=30, loop_factory=loop_factory(loop))

    test.__name__ = body.__name__
    test.__doc__ = body.__doc__
    return test


async def close_both(transport: Any, protocol: Recorder, peer: Peer) -> None:
    transport.abort()
    await asyncio.wait_for(protocol.done.wait(), 5)
    peer.sock.close()


# ---------------------------------------------------------------- the transport


@pytest.mark.parametrize("server_side", [True, False], ids=["server", "client"])
@pytest.mark.parametrize("kind, loop", CASES)
def test_reads_writes_and_extra_info(kind: str, loop: str, server_side: bool) -> None:
    """Bytes both ways in both roles; get_extra_info as asyncio gives it."""

    async def main() -> None:
        protocol = Recorder()
        transport, peer, ours = await pair(kind, protocol, server_side=server_side)
        await peer.send(b"hello")
        await eventually(lambda: protocol.data == b"hello")
        transport.write(b"world")
        transport.write(bytearray(b"!"))
        transport.write(memoryview(b"??")[1:])
        transport.writelines([b"a", b"b"])
        transport.write(b"")
        assert await peer.recv(9) == b"world!?ab"
        sslobj = transport.get_extra_info("ssl_object")
        assert isinstance(sslobj, ssl.SSLObject)
        assert sslobj.server_side is server_side
        assert transport.get_extra_info("peercert") == sslobj.getpeercert()
        if not server_side:
            assert ("DNS", "localhost") in transport.get_extra_info("peercert")["subjectAltName"]
        assert transport.get_extra_info("cipher") == sslobj.cipher() == peer.sslobj.cipher()
        assert transport.get_extra_info("compression") is None
        assert isinstance(transport.get_extra_info("sslcontext"), ssl.SSLContext)
        assert transport.get_extra_info("peername") == peer.sock.getsockname()
        assert transport.get_extra_info("sockname") == peer.sock.getpeername()
        assert transport.get_extra_info("socket").fileno() == ours.fileno()
        assert transport.get_extra_info("missing", 7) == 7
        assert transport.get_protocol() is protocol
        assert transport.get_write_buffer_size() == 0
        assert not transport.can_write_eof()
        with pytest.raises(NotImplementedError):
            transport.write_eof()
        assert not transport.is_closing() and transport.is_reading()
        with pytest.raises(TypeError):
            transport.write("text")
        await close_both(transport, protocol, peer)
        assert protocol.events == ["made", "lost"] and protocol.lost is None
        assert fd_closed(ours)

    run(main(), timeout=30, loop_factory=loop_factory(loop))


@transport_case
async def test_backpressure_and_large_writes_intact(kind: str) -> None:
    """Writes the peer does not read (1 MiB and more): pause_writing above
    the high-water mark, resume_writing once drained, every byte in order."""
    protocol = Recorder()
    transport, peer, _ = await pair(kind, protocol)
    payload = os.urandom(8 * 1024 * 1024 + 3)
    transport.write(payload)
    # asyncio's SSL transport counts only the plaintext and ciphertext it has
    # not handed to its socket transport yet, which takes all of one write:
    # it reports nothing, and pauses only later, if at all. wsfast's counts
    # what the socket did not take, as its socket transport does.
    reference = kind == "asyncio"
    assert reference or transport.get_write_buffer_size() > 0
    assert reference or protocol.events == ["made", "pause"]
    small = [bytes([i]) * 100 for i in range(100)]
    for chunk in small:
        transport.write(chunk)
    mutable = bytearray(b"x" * 1000)
    transport.write(mutable)
    mutable[:] = b"y" * 1000  # written data is taken at once
    big = memoryview(os.urandom(1024 * 1024 + 1))
    transport.write(big)
    expected = payload + b"".join(small) + b"x" * 1000 + bytes(big)
    received = await peer.recv(len(expected), timeout=20)
    assert hashlib.sha256(received).digest() == hashlib.sha256(expected).digest()
    await eventually(lambda: transport.get_write_buffer_size() == 0)
    if reference:
        assert protocol.events.count("pause") == protocol.events.count("resume") <= 1
    else:
        assert protocol.events == ["made", "pause", "resume"]
    # and a large message the other way, into the protocol's buffer
    incoming = os.urandom(3 * 1024 * 1024)
    await peer.send(incoming)
    await eventually(lambda: len(protocol.data) == len(incoming), timeout=10)
    assert protocol.data == incoming
    await close_both(transport, protocol, peer)


@transport_case
async def test_close_sends_what_is_queued_then_close_notify(kind: str) -> None:
    """close() with bytes queued: they go out, then close_notify; the peer's
    close_notify completes the shutdown: eof_received, connection_lost(None)."""
    protocol = Recorder()
    transport, peer, ours = await pair(kind, protocol)
    payload = os.urandom(4 * 1024 * 1024)
    transport.write(payload)
    transport.close()
    transport.close()  # twice: nothing more
    assert transport.is_closing()
    assert not protocol.done.is_set()
    assert await peer.recv_until_closed() == payload
    assert peer.closed_by_peer  # close_notify, not a bare TCP EOF
    assert not protocol.done.is_set()  # waits for ours
    await peer.close_notify()
    await asyncio.wait_for(protocol.done.wait(), 5)
    if kind == "asyncio":  # it may not pause at all (see above)
        assert protocol.events[0] == "made" and protocol.events[-2:] == ["eof", "lost"]
    else:
        assert protocol.events == ["made", "pause", "resume", "eof", "lost"]
    assert protocol.lost is None
    assert fd_closed(ours)
    peer.sock.close()


@transport_case
async def test_close_then_the_peers_eof_ends_it(kind: str) -> None:
    protocol = Recorder()
    transport, peer, ours = await pair(kind, protocol)
    transport.close()
    assert await peer.recv_until_closed() == b""
    assert peer.closed_by_peer
    peer.sock.shutdown(socket.SHUT_WR)  # a TCP EOF, no close_notify
    await asyncio.wait_for(protocol.done.wait(), 5)
    assert protocol.lost is None
    assert fd_closed(ours)
    peer.sock.close()


@transport_case
async def test_close_bounded_by_the_shutdown_timeout(kind: str) -> None:
    """A peer that never answers close_notify: connection_lost(TimeoutError)
    after ssl_shutdown_timeout."""
    protocol = Recorder()
    transport, peer, ours = await pair(kind, protocol, ssl_shutdown_timeout=0.3)
    transport.close()
    assert await peer.recv_until_closed() == b""
    await asyncio.wait_for(protocol.done.wait(), 5)
    assert isinstance(protocol.lost, TimeoutError)
    assert fd_closed(ours)
    peer.sock.close()


@transport_case
async def test_write_after_close_is_ignored(kind: str) -> None:
    protocol = Recorder()
    transport, peer, _ = await pair(kind, protocol)
    transport.close()
    for _ in range(10):  # logged after a few, never raised
        transport.write(b"too late")
    assert await peer.recv_until_closed() == b""
    await peer.close_notify()
    await asyncio.wait_for(protocol.done.wait(), 5)
    transport.write(b"later still")
    peer.sock.close()


@transport_case
async def test_abort_drops_what_is_queued(kind: str) -> None:
    protocol = Recorder()
    transport, peer, ours = await pair(kind, protocol)
    transport.write(bytes(16 * 1024 * 1024))
    assert kind == "asyncio" or transport.get_write_buffer_size() > 0  # (see above)
    transport.abort()
    assert transport.is_closing()
    await asyncio.wait_for(protocol.done.wait(), 5)
    assert protocol.lost is None
    assert transport.get_write_buffer_size() == 0
    assert fd_closed(ours)
    assert len(await peer.recv_until_closed()) < 16 * 1024 * 1024
    assert not peer.closed_by_peer  # no close_notify
    transport.write(b"after")  # ignored
    peer.sock.close()


@transport_case
async def test_the_peers_close_notify_is_eof_received(kind: str) -> None:
    """The peer's data then close_notify: the data, eof_received, our
    close_notify, connection_lost(None)."""
    protocol = Recorder()
    transport, peer, ours = await pair(kind, protocol)
    peer.sslobj.write(b"last words")
    await peer.close_notify()
    await asyncio.wait_for(protocol.done.wait(), 5)
    assert protocol.data == b"last words"
    assert protocol.events == ["made", "eof", "lost"] and protocol.lost is None
    assert await peer.recv_until_closed() == b""
    assert peer.closed_by_peer
    assert fd_closed(ours)
    peer.sock.close()


@transport_case
async def test_eof_without_close_notify(kind: str) -> None:
    """A TCP EOF without close_notify is treated as asyncio does: the data
    before it, eof_received, connection_lost(None)."""
    protocol = Recorder(eof_keeps_open=True)  # has no effect with TLS
    transport, peer, ours = await pair(kind, protocol)
    await peer.send(b"truncated?")
    peer.sock.shutdown(socket.SHUT_WR)
    await asyncio.wait_for(protocol.done.wait(), 5)
    assert protocol.data == b"truncated?"
    assert protocol.events == ["made", "eof", "lost"] and protocol.lost is None
    assert fd_closed(ours)
    peer.sock.close()


@transport_case
async def test_peer_reset_is_connection_lost_with_the_error(kind: str) -> None:
    protocol = Recorder()
    transport, peer, ours = await pair(kind, protocol)
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.sock.close()  # RST
    await asyncio.wait_for(protocol.done.wait(), 5)
    assert isinstance(protocol.lost, ConnectionResetError)
    assert fd_closed(ours)


@transport_case
async def test_garbage_is_connection_lost_with_an_ssl_error(kind: str) -> None:
    protocol = Recorder()
    transport, peer, ours = await pair(kind, protocol)
    await asyncio.get_running_loop().sock_sendall(peer.sock, b"\x17\x03\x03\x00\x20" + bytes(32))
    await asyncio.wait_for(protocol.done.wait(), 5)
    assert isinstance(protocol.lost, ssl.SSLError)
    assert fd_closed(ours)
    peer.sock.close()


@transport_case
async def test_pause_and_resume_reading(kind: str) -> None:
    protocol = Recorder()
    transport, peer, _ = await pair(kind, protocol)
    transport.pause_reading()
    transport.pause_reading()
    assert not transport.is_reading()
    await peer.send(b"held back")
    await asyncio.sleep(0.05)
    assert protocol.data == b""
    transport.resume_reading()
    transport.resume_reading()
    assert transport.is_reading()
    await eventually(lambda: protocol.data == b"held back")
    await close_both(transport, protocol, peer)


@transport_case
async def test_a_failing_protocol_is_reported_and_closed(kind: str) -> None:
    reported = loop_errors()
    protocol = Recorder()
    protocol.fail_on_data = ValueError("bad data")
    transport, peer, ours = await pair(kind, protocol)
    await peer.send(b"boom")
    await asyncio.wait_for(protocol.done.wait(), 5)
    assert isinstance(protocol.lost, ValueError)
    assert [context["exception"] for context in reported] == [protocol.lost]
    assert fd_closed(ours)
    peer.sock.close()


@transport_case
async def test_write_buffer_limits(kind: str) -> None:
    protocol = Recorder()
    transport, peer, _ = await pair(kind, protocol)
    transport.set_write_buffer_limits(high=1000)
    assert transport.get_write_buffer_limits() == (250, 1000)
    transport.set_write_buffer_limits(low=100)
    assert transport.get_write_buffer_limits() == (100, 400)
    with pytest.raises(ValueError):
        transport.set_write_buffer_limits(high=10, low=20)
    await close_both(transport, protocol, peer)


# ---------------------------------------------------------------- the handshake


@transport_case
async def test_a_peer_that_vanishes_mid_handshake(kind: str) -> None:
    """Server end: the client sends its hello and closes. The protocol gets
    nothing, the socket is closed, nothing hangs."""
    protocol = Recorder()
    ours, peer_sock = await tcp_pair()
    peer = Peer(peer_sock, client_context(), False, "localhost")
    with pytest.raises(ssl.SSLWantReadError):
        peer.sslobj.do_handshake()
    await peer.flush()  # the ClientHello
    peer_sock.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(start(kind, protocol, ours, server_side=True, context=server_context()), 5)
    assert protocol.events == []
    await eventually(lambda: fd_closed(ours))
    peer_sock.close()

    # client end: the server accepts, reads the hello and resets
    ours, peer_sock = await tcp_pair()
    connecting = asyncio.ensure_future(
        start(kind, protocol, ours, server_side=False, context=client_context(), server_hostname="localhost")
    )
    await asyncio.get_running_loop().sock_recv(peer_sock, 65536)
    peer_sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer_sock.close()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(connecting, 5)
    assert protocol.events == []
    await eventually(lambda: fd_closed(ours))


@transport_case
async def test_handshake_timeout(kind: str) -> None:
    """A peer that never answers: ConnectionAbortedError after
    ssl_handshake_timeout, in either role; the socket is closed."""
    protocol = Recorder()
    for server_side in (True, False):
        ours, peer_sock = await tcp_pair()
        started = asyncio.get_running_loop().time()
        with pytest.raises(ConnectionAbortedError):
            await asyncio.wait_for(
                start(
                    kind,
                    protocol,
                    ours,
                    server_side=server_side,
                    context=server_context() if server_side else client_context(),
                    server_hostname="localhost",
                    ssl_handshake_timeout=0.2,
                ),
                5,
            )
        assert asyncio.get_running_loop().time() - started < 3
        assert protocol.events == []
        await eventually(lambda sock=ours: fd_closed(sock))
        peer_sock.close()


@transport_case
async def test_certificate_verification_failure(kind: str) -> None:
    """A client that does not trust the server's CA, or asks for another
    name: ssl.SSLCertVerificationError, as with the loop's transport."""
    for context, hostname in ((client_context(trusting=False), "localhost"), (client_context(), "example.com")):
        protocol = Recorder()
        ours, peer_sock = await tcp_pair()
        peer = Peer(peer_sock, server_context(), True, None)
        serving = asyncio.ensure_future(peer.handshake())
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.wait_for(
                start(kind, protocol, ours, server_side=False, context=context, server_hostname=hostname), 5
            )
        assert protocol.events == []
        await eventually(lambda sock=ours: fd_closed(sock))
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await asyncio.wait_for(serving, 5)
        peer_sock.close()


@transport_case
async def test_sni_and_alpn(kind: str) -> None:
    """The client sends server_hostname as SNI and its ALPN protocols; the
    server end selects from its own."""
    names: list[Optional[str]] = []
    peer_context = server_context(alpn=["h2", "http/1.1"])
    peer_context.sni_callback = lambda sslobj, name, context: names.append(name)  # type: ignore[assignment, misc]
    ours, peer_sock = await tcp_pair()
    peer = Peer(peer_sock, peer_context, True, None)
    protocol = Recorder()
    transport, _ = await asyncio.gather(
        start(
            kind,
            protocol,
            ours,
            server_side=False,
            context=client_context(alpn=["http/1.1"]),
            server_hostname="localhost",
        ),
        peer.handshake(),
    )
    assert names == ["localhost"]
    assert transport.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
    assert transport.get_extra_info("ssl_object").server_hostname == "localhost"
    await close_both(transport, protocol, peer)

    # the server end
    ours, peer_sock = await tcp_pair()
    peer = Peer(peer_sock, client_context(alpn=["http/1.1"]), False, "localhost")
    protocol = Recorder()
    transport, _ = await asyncio.gather(
        start(kind, protocol, ours, server_side=True, context=server_context(alpn=["http/1.1"])), peer.handshake()
    )
    assert transport.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
    await close_both(transport, protocol, peer)


# ---------------------------------------------------------------- where it is used


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_usable_with_an_ssl_context_with_either_codec(loop_name: str) -> None:
    loop = loop_factory(loop_name)()
    try:
        # uvloop keeps its own (compiled) SSL transport: see usable().
        assert usable(loop, ssl.create_default_context(), True) is (loop_name == "asyncio")
        assert not usable(loop, ssl.create_default_context(), False)
        assert not usable(loop, True, True)  # not a context: the loop's transport
    finally:
        loop.close()


def own_tls(transport: Any, own_transport: bool, loop_name: str) -> None:
    if own_transport and loop_name == "asyncio":
        assert type(transport) is TLSTransport
    else:
        assert type(transport).__module__.startswith(loop_name)


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
@pytest.mark.parametrize("own_transport", [True, False])
def test_wss_server_and_client_run_on_it(own_transport: bool, loop_name: str) -> None:
    """Both ends of a ``wss://`` connection use wsfast's TLS transport on
    asyncio's loop (uvloop's own on uvloop), or the loop's with
    ``own_transport=False``; messages of every size arrive
    intact either way, and the closing handshake completes."""

    async def main() -> None:
        async with create_server(
            lambda ws, request: Echo(),
            "127.0.0.1",
            0,
            ssl=server_context(),
            own_transport=own_transport,
            max_message_size=None,
        ) as server:
            listener = Collect()
            ws = await create_connection(
                listener,
                f"wss://localhost:{server.port}",
                ssl=client_context(),
                own_transport=own_transport,
                max_message_size=None,
            )
            server_side = next(iter(server.connections))
            for transport in (ws.transport, server_side.transport):
                own_tls(transport, own_transport, loop_name)
            assert server_side.transport.get_extra_info("peername") == ws.transport.get_extra_info("sockname")
            for size in (0, 125, 65536, 3 * 1024 * 1024 + 5):
                payload = os.urandom(size)
                ws.send_binary(payload)
                assert await asyncio.wait_for(listener.messages.get(), 10) == payload
            ws.close()
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1000
            await eventually(lambda: not server.connections)

    run(main(), timeout=30, loop_factory=loop_factory(loop_name))


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_the_awaitable_api_over_wss(loop_name: str) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, ssl=server_context()) as server:
            async with connect(f"wss://127.0.0.1:{server.port}/", ssl=client_context()) as ws:
                own_tls(ws.transport.transport, True, loop_name)
                for message in ("hello", b"\x00" * 100_000):
                    await ws.send(message)
                    assert await ws.recv() == message
            assert ws.close_code == 1000

    run(main(), timeout=30, loop_factory=loop_factory(loop_name))


def test_client_certificate_failure_and_server_hostname() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, ssl=server_context()) as server:
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(f"wss://127.0.0.1:{server.port}/", ssl=client_context(trusting=False))
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(f"wss://127.0.0.1:{server.port}/", ssl=client_context(), server_hostname="example.com")
            async with connect(
                f"wss://127.0.0.1:{server.port}/", ssl=client_context(), server_hostname="localhost"
            ) as ws:
                await ws.send("named")
                assert await ws.recv() == "named"

    run(main(), timeout=30)


def test_server_handshake_timeout_and_a_vanishing_client() -> None:
    """A TCP client that never starts TLS is dropped after
    ssl_handshake_timeout; one that leaves mid-handshake is forgotten; the
    server goes on serving."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with serve(echo, "127.0.0.1", 0, ssl=server_context(), ssl_handshake_timeout=0.2) as server:
            assert server._acceptor is not None
            fds = open_fds()
            silent = socket.create_connection(("127.0.0.1", server.port))
            silent.setblocking(False)
            assert await asyncio.wait_for(loop.sock_recv(silent, 100), 5) == b""
            silent.close()
            leaving = socket.create_connection(("127.0.0.1", server.port))
            leaving.setblocking(False)
            peer = Peer(leaving, client_context(), False, "localhost")
            with pytest.raises(ssl.SSLWantReadError):
                peer.sslobj.do_handshake()
            await peer.flush()
            leaving.close()
            if fds is not None:  # the server closed both sockets
                await eventually(lambda: open_fds() == fds)
            async with connect(f"wss://localhost:{server.port}/", ssl=client_context()) as ws:
                await ws.send("still served")
                assert await ws.recv() == "still served"

    run(main(), timeout=30)


def test_a_client_handshake_timeout_through_open_timeout() -> None:
    """A server that accepts TCP and never answers TLS: the client gives up
    after open_timeout (or ssl_handshake_timeout), and leaks nothing."""

    async def main() -> None:
        listening = socket.create_server(("127.0.0.1", 0))
        port = listening.getsockname()[1]
        with pytest.raises(asyncio.TimeoutError):
            await connect(f"wss://localhost:{port}/", ssl=client_context(), open_timeout=0.2)
        with pytest.raises((ConnectionAbortedError, ConnectionClosed)):
            await connect(f"wss://localhost:{port}/", ssl=client_context(), ssl_handshake_timeout=0.2, open_timeout=5)
        listening.close()

    run(main(), timeout=30)


@pytest.mark.parametrize("own_transport", [True, False])
def test_renegotiation_is_refused(own_transport: bool) -> None:
    """A TLS 1.2 client asking to renegotiate (``openssl s_client``'s ``R``
    command) is refused, by wsfast's transport as by the loop's: both leave
    it to OpenSSL, whose servers refuse client-initiated renegotiation since
    3.0 (``SSL_OP_ALLOW_CLIENT_RENEGOTIATION`` is off by default)."""
    if ssl.OPENSSL_VERSION_INFO < (3,):
        pytest.skip("OpenSSL < 3.0 allows client-initiated renegotiation")
    if not any(os.access(os.path.join(d, "openssl"), os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.skip("the openssl command is needed")

    async def main() -> None:
        context = server_context()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        async with serve(echo, "127.0.0.1", 0, ssl=context, own_transport=own_transport) as server:
            process = await asyncio.create_subprocess_exec(
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{server.port}",
                "-tls1_2",
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            assert process.stdin is not None
            try:
                await asyncio.sleep(0.5)
                process.stdin.write(b"R\n")  # command letters work without -ign_eof
                await process.stdin.drain()
                await asyncio.sleep(0.5)
                process.stdin.close()
                output, _ = await asyncio.wait_for(process.communicate(), 10)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            text = output.decode(errors="replace")
            assert "RENEGOTIATING" in text and "no renegotiation" in text, text
            assert not context.options & ssl.OP_NO_RENEGOTIATION  # the context is left alone
            async with connect(f"wss://localhost:{server.port}/", ssl=client_context()) as ws:
                await ws.send("after")
                assert await ws.recv() == "after"

    run(main(), timeout=30)


def test_a_transport_of_the_callback_api_is_a_websocket_transport() -> None:
    """On the server, the protocol the TLS transport serves is wsfast's."""

    async def main() -> None:
        async with create_server(lambda ws, request: Echo(), "127.0.0.1", 0, ssl=server_context()) as server:
            ws = await create_connection(Collect(), f"wss://localhost:{server.port}", ssl=client_context())
            server_side = next(iter(server.connections))
            assert isinstance(server_side.transport.get_protocol(), WebSocketTransport)
            ws.close()
            await ws.wait_closed()

    run(main(), timeout=30)
