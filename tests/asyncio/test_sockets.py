"""wsfast's socket transport (``wsfast._speedups.SocketTransport``) and where
it is used (:mod:`wsfast.asyncio.sockets`).

The transport tests run each case twice over a real socket pair: once on
wsfast's transport and once on asyncio's own, which is the reference; both
must behave alike. wsfast's also runs on uvloop. They need the compiled extension, whichever codec the
rest of the suite uses.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import socket
import struct
import sys
from typing import Any, Callable, Optional

import pytest

import wsfast.asyncio.sockets as sockets_module
from wsfast.asyncio import Listener, WebSocketTransport, connect, create_connection, create_server, serve
from wsfast.asyncio.sockets import Acceptor, usable
from wsfast.codec import HAS_SPEEDUPS

from ..conftest import require_speedups
from .helpers import echo, eventually, run

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the socket transport is POSIX only")

# (transport, event loop): asyncio's own transport is the reference; uvloop's
# differs from it in details (it keeps a reference to a queued bytearray, its
# low-water mark is 16 bytes, write() after abort() raises), so on uvloop only
# wsfast's transport runs.
CASES = [("wsfast", "asyncio"), ("asyncio", "asyncio"), ("wsfast", "uvloop")]


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        return pytest.importorskip("uvloop").new_event_loop  # type: ignore[no-any-return]
    return asyncio.new_event_loop


class Recorder(asyncio.BufferedProtocol):
    """A buffered protocol that records what its transport tells it."""

    def __init__(self, eof_keeps_open: bool = False) -> None:
        self.transport: Any = None
        self.buffer = bytearray(65536)
        self.data = bytearray()
        self.events: list[str] = []
        self.lost: Optional[BaseException] = None
        self.made = asyncio.Event()
        self.done = asyncio.Event()
        self.eof_keeps_open = eof_keeps_open
        self.fail_on_data: Optional[BaseException] = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append("made")
        self.made.set()

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self.fail_on_data is not None:
            raise self.fail_on_data
        self.data += self.buffer[:nbytes]

    def eof_received(self) -> bool:
        self.events.append("eof")
        return self.eof_keeps_open

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.events.append("lost")
        self.lost = exc
        self.done.set()


async def pair(kind: str, protocol: Recorder) -> tuple[Any, socket.socket]:
    """A transport of ``kind`` over one end of a TCP connection on 127.0.0.1;
    the other end, a blocking-free plain socket, for the test to drive."""
    loop = asyncio.get_running_loop()
    listening = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listening.getsockname())
    ours, _ = listening.accept()
    listening.close()
    peer.setblocking(False)
    if kind == "wsfast":
        require_speedups().SocketTransport(loop, ours, protocol)
    else:
        await loop.connect_accepted_socket(lambda: protocol, ours)
    await asyncio.wait_for(protocol.made.wait(), 5)
    return protocol.transport, peer


async def receive(peer: socket.socket, nbytes: int, timeout: float = 10.0) -> bytes:
    loop = asyncio.get_running_loop()
    out = bytearray()
    while len(out) < nbytes:
        chunk = await asyncio.wait_for(loop.sock_recv(peer, 1 << 20), timeout)
        if not chunk:
            break
        out += chunk
    return bytes(out)


async def receive_until_eof(peer: socket.socket, timeout: float = 10.0) -> bytes:
    loop = asyncio.get_running_loop()
    out = bytearray()
    while chunk := await asyncio.wait_for(loop.sock_recv(peer, 1 << 20), timeout):
        out += chunk
    return bytes(out)


async def close_both(transport: Any, protocol: Recorder, peer: socket.socket, abort: bool = False) -> None:
    """Close (or abort) the transport, wait for connection_lost, close the peer."""
    if abort:
        transport.abort()
    else:
        transport.close()
    await asyncio.wait_for(protocol.done.wait(), 5)
    peer.close()


def loop_errors() -> list[dict[str, Any]]:
    """What the running loop's exception handler is given, from now on."""
    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
    return reported


def transport_case(body: Callable[[str], Any]) -> Any:
    """Run ``body(kind)`` for each of CASES."""

    @pytest.mark.parametrize("kind, loop", CASES)
    def test(kind: str, loop: str) -> None:
        run(body(kind), timeout=30, loop_factory=loop_factory(loop))

    test.__name__ = body.__name__
    test.__doc__ = body.__doc__
    return test


# ---------------------------------------------------------------- the transport


@transport_case
async def test_reads_writes_and_extra_info(kind: str) -> None:
    """Bytes both ways; peername, sockname and socket as asyncio gives them."""
    protocol = Recorder()
    transport, peer = await pair(kind, protocol)
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(peer, b"hello")
    await eventually(lambda: protocol.data == b"hello")
    transport.write(b"world")
    transport.write(bytearray(b"!"))
    transport.write(memoryview(b"??")[1:])
    transport.writelines([b"a", b"b"])
    assert await receive(peer, 9) == b"world!?ab"
    assert transport.get_extra_info("peername") == peer.getsockname()
    assert transport.get_extra_info("sockname") == peer.getpeername()
    assert transport.get_extra_info("socket").fileno() >= 0
    assert transport.get_extra_info("missing", 7) == 7
    assert transport.get_protocol() is protocol
    assert transport.get_write_buffer_size() == 0
    assert transport.get_write_buffer_limits() == (16384, 65536)
    assert transport.can_write_eof()
    assert not transport.is_closing() and transport.is_reading()
    with pytest.raises(TypeError):
        transport.write("text")
    transport.close()
    assert transport.is_closing()
    await asyncio.wait_for(protocol.done.wait(), 5)
    assert protocol.events == ["made", "lost"] and protocol.lost is None
    assert await receive_until_eof(peer) == b""
    peer.close()


@transport_case
async def test_backpressure_and_a_large_write_intact(kind: str) -> None:
    """A write the peer does not read: buffered, pause_writing above the
    high-water mark, resume_writing once drained, every byte in order."""
    protocol = Recorder()
    transport, peer = await pair(kind, protocol)
    payload = os.urandom(8 * 1024 * 1024)
    transport.write(payload)
    assert transport.get_write_buffer_size() > 0
    assert protocol.events == ["made", "pause"]
    small = [bytes([i]) * 100 for i in range(100)]  # queued behind: one sendmsg takes many
    for chunk in small:
        transport.write(chunk)
    mutable = bytearray(b"x" * 1000)
    transport.write(mutable)
    mutable[:] = b"y" * 1000  # queued writes are copies of mutable buffers
    expected = payload + b"".join(small) + b"x" * 1000
    received = await receive(peer, len(expected))
    assert hashlib.sha256(received).digest() == hashlib.sha256(expected).digest()
    await eventually(lambda: transport.get_write_buffer_size() == 0)
    assert protocol.events == ["made", "pause", "resume"]
    await close_both(transport, protocol, peer)


@transport_case
async def test_close_sends_what_is_queued_first(kind: str) -> None:
    """close() with bytes queued: they all go out, then the socket closes."""
    protocol = Recorder()
    transport, peer = await pair(kind, protocol)
    payload = os.urandom(4 * 1024 * 1024)
    transport.write(payload)
    transport.close()
    assert not protocol.done.is_set()
    assert await receive_until_eof(peer) == payload
    await asyncio.wait_for(protocol.done.wait(), 5)
    assert protocol.lost is None
    peer.close()


@transport_case
async def test_abort_drops_what_is_queued(kind: str) -> None:
    protocol = Recorder()
    transport, peer = await pair(kind, protocol)
    size = 32 * 1024 * 1024
    transport.write(bytes(size))
    queued = transport.get_write_buffer_size()
    assert queued > 0
    transport.abort()
    assert transport.is_closing()
    await asyncio.wait_for(protocol.done.wait(), 5)
    assert protocol.lost is None
    assert transport.get_write_buffer_size() == 0
    received = await receive_until_eof(peer)
    assert len(received) <= size - queued
    transport.write(b"after")  # ignored once the connection is lost
    peer.close()


@transport_case
async def test_eof_closes_unless_the_protocol_keeps_it_open(kind: str) -> None:
    protocol = Recorder()
    transport, peer = await pair(kind, protocol)
    peer.shutdown(socket.SHUT_WR)
    await asyncio.wait_for(protocol.done.wait(), 5)
    assert protocol.events == ["made", "eof", "lost"] and protocol.lost is None
    peer.close()

    protocol = Recorder(eof_keeps_open=True)
    transport, peer = await pair(kind, protocol)
    peer.shutdown(socket.SHUT_WR)
    await eventually(lambda: "eof" in protocol.events)
    transport.write(b"still here")  # half-closed: we may still write
    assert await receive(peer, 10) == b"still here"
    assert not protocol.done.is_set()
    transport.close()
    await asyncio.wait_for(protocol.done.wait(), 5)
    assert await receive_until_eof(peer) == b""
    peer.close()


@transport_case
async def test_write_eof_half_closes(kind: str) -> None:
    protocol = Recorder()
    transport, peer = await pair(kind, protocol)
    transport.write(b"last words")
    transport.write_eof()
    transport.write_eof()  # twice: nothing more
    with pytest.raises(RuntimeError):
        transport.write(b"more")
    assert await receive_until_eof(peer) == b"last words"
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(peer, b"reply")  # the other direction still works
    await eventually(lambda: protocol.data == b"reply")
    await close_both(transport, protocol, peer)


@transport_case
async def test_pause_and_resume_reading(kind: str) -> None:
    protocol = Recorder()
    transport, peer = await pair(kind, protocol)
    loop = asyncio.get_running_loop()
    transport.pause_reading()
    transport.pause_reading()
    assert not transport.is_reading()
    await loop.sock_sendall(peer, b"held back")
    await asyncio.sleep(0.05)
    assert protocol.data == b""
    transport.resume_reading()
    transport.resume_reading()
    assert transport.is_reading()
    await eventually(lambda: protocol.data == b"held back")
    transport.close()
    transport.resume_reading()  # closing: stays stopped
    assert not transport.is_reading()
    await asyncio.wait_for(protocol.done.wait(), 5)
    peer.close()


@transport_case
async def test_peer_reset_is_connection_lost_with_the_error(kind: str) -> None:
    protocol = Recorder()
    transport, peer = await pair(kind, protocol)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # RST
    await asyncio.wait_for(protocol.done.wait(), 5)
    assert isinstance(protocol.lost, ConnectionResetError)
    assert transport.is_closing()


@transport_case
async def test_a_failing_protocol_is_reported_and_closed(kind: str) -> None:
    loop = asyncio.get_running_loop()
    reported = loop_errors()
    protocol = Recorder()
    protocol.fail_on_data = ValueError("bad data")
    transport, peer = await pair(kind, protocol)
    await loop.sock_sendall(peer, b"boom")
    await asyncio.wait_for(protocol.done.wait(), 5)
    assert isinstance(protocol.lost, ValueError)
    assert [context["exception"] for context in reported] == [protocol.lost]
    assert "buffer_updated" in reported[0]["message"]
    assert await receive_until_eof(peer) == b""
    peer.close()


@transport_case
async def test_a_failing_pause_writing_is_reported(kind: str) -> None:
    reported = loop_errors()
    protocol = Recorder()
    failure = ValueError("cannot pause")

    def pause_writing() -> None:
        raise failure

    protocol.pause_writing = pause_writing  # type: ignore[method-assign]
    transport, peer = await pair(kind, protocol)
    transport.write(bytes(8 * 1024 * 1024))
    assert [(context["message"], context["exception"]) for context in reported] == [
        ("protocol.pause_writing() failed", failure)
    ]
    assert not transport.is_closing()  # reported, not fatal
    await close_both(transport, protocol, peer, abort=True)  # the peer reads nothing: close() would wait


@transport_case
async def test_write_buffer_limits(kind: str) -> None:
    protocol = Recorder()
    transport, peer = await pair(kind, protocol)
    transport.set_write_buffer_limits(high=1000)
    assert transport.get_write_buffer_limits() == (250, 1000)
    transport.set_write_buffer_limits(low=100)
    assert transport.get_write_buffer_limits() == (100, 400)
    with pytest.raises(ValueError):
        transport.set_write_buffer_limits(high=10, low=20)
    await close_both(transport, protocol, peer)


# ---------------------------------------------------------------- where it is used


class Echo(Listener):
    def on_open(self, ws: WebSocketTransport) -> None:
        self.ws = ws

    def on_binary(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def on_text(self, data: Any) -> None:
        self.ws.send_text(data)


class Collect(Listener):
    def __init__(self) -> None:
        self.messages: asyncio.Queue[Any] = asyncio.Queue()

    def on_binary(self, data: bytes) -> None:
        self.messages.put_nowait(data)


def own_transport_type() -> Any:
    return require_speedups().SocketTransport if HAS_SPEEDUPS else None


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_usable_on_selector_loops_and_uvloop_without_tls_with_the_extension(loop_name: str) -> None:
    loop = loop_factory(loop_name)()
    try:
        assert usable(loop, None, True) is HAS_SPEEDUPS
        assert not usable(loop, object(), True)
        assert not usable(loop, None, False)
    finally:
        loop.close()


def test_not_usable_on_other_loops() -> None:
    class OtherLoop(asyncio.AbstractEventLoop):
        pass

    assert not usable(OtherLoop(), None, True)


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
@pytest.mark.parametrize("own_transport", [True, False])
def test_server_and_client_connections_run_on_it(own_transport: bool, loop_name: str) -> None:
    """Both ends of a ``ws://`` connection on the standard loop use wsfast's
    transport (with the extension), or asyncio's with ``own_transport=False``;
    messages of every size arrive intact either way."""

    async def main() -> None:
        async with create_server(
            lambda ws, request: Echo(), "127.0.0.1", 0, own_transport=own_transport, max_message_size=None
        ) as server:
            listener = Collect()
            ws = await create_connection(
                listener, f"ws://127.0.0.1:{server.port}", own_transport=own_transport, max_message_size=None
            )
            expected = own_transport_type() if own_transport else None
            server_side = next(iter(server.connections))
            for transport in (ws.transport, server_side.transport):
                if expected is not None:
                    assert type(transport) is expected
                else:
                    assert type(transport).__module__.startswith(loop_name)
            for size in (0, 125, 65536, 3 * 1024 * 1024 + 5):
                payload = os.urandom(size)
                ws.send_binary(payload)
                assert await asyncio.wait_for(listener.messages.get(), 10) == payload
            ws.close()
            await ws.wait_closed()
            assert ws.close_code == 1000

    run(main(), timeout=30, loop_factory=loop_factory(loop_name))


def test_client_options_for_the_loop_keep_its_transport() -> None:
    """``local_addr`` is the loop's connection logic: the loop's transport."""

    async def main() -> None:
        async with create_server(lambda ws, request: Echo(), "127.0.0.1", 0) as server:
            ws = await create_connection(Collect(), f"ws://127.0.0.1:{server.port}", local_addr=("127.0.0.1", 0))
            assert type(ws.transport).__module__.startswith("asyncio")
            ws.close()
            await ws.wait_closed()
            ws = await create_connection(Collect(), f"ws://localhost:{server.port}", family=socket.AF_INET)
            if HAS_SPEEDUPS:
                assert type(ws.transport) is own_transport_type()
            ws.close()
            await ws.wait_closed()

    run(main())


def test_client_connect_errors() -> None:
    async def main() -> None:
        probe = socket.create_server(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now
        with pytest.raises(ConnectionRefusedError):
            await create_connection(Collect(), f"ws://127.0.0.1:{port}")
        with pytest.raises(OSError):
            await sockets_module.connect_socket(asyncio.get_running_loop(), "127.0.0.1", port)

    run(main())


def test_connect_over_a_unix_socket(tmp_path: Any) -> None:
    path = str(tmp_path / "ws.sock")

    async def main() -> None:
        async with create_server(lambda ws, request: Echo(), path=path) as server:
            listener = Collect()
            ws = await create_connection(listener, "ws://localhost/", path=path)
            if HAS_SPEEDUPS:
                assert type(ws.transport) is own_transport_type()
                assert server._acceptor is not None
            ws.send_binary(b"over unix")
            assert await asyncio.wait_for(listener.messages.get(), 5) == b"over unix"
            ws.close()
            await ws.wait_closed()

    run(main())


def test_server_close_stops_accepting_and_serve_forever_ends() -> None:
    async def main() -> None:
        server = await serve(echo, "127.0.0.1", 0)
        port = server.port
        assert (server._acceptor is not None) is HAS_SPEEDUPS
        forever = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        async with connect(f"ws://127.0.0.1:{port}") as client:
            await client.send("still served")
            assert await client.recv() == "still served"
            server.close()
            with pytest.raises(asyncio.CancelledError):
                await forever
            await server.wait_closed()
        with pytest.raises(OSError):
            await create_connection(Collect(), f"ws://127.0.0.1:{port}")

    run(main())


def test_serve_forever_cancelled_closes_the_listening_sockets() -> None:
    async def main() -> None:
        server = await create_server(lambda ws, request: Echo(), "127.0.0.1", 0)
        port = server.port
        forever = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0.01)
        forever.cancel()
        with pytest.raises(asyncio.CancelledError):
            await forever
        with pytest.raises(OSError):
            await create_connection(Collect(), f"ws://127.0.0.1:{port}")
        server.close()
        await server.wait_closed()

    run(main())


@pytest.mark.skipif(not HAS_SPEEDUPS, reason="the acceptor runs with the compiled codec only")
def test_accept_out_of_descriptors_pauses_and_resumes(monkeypatch: pytest.MonkeyPatch) -> None:
    """EMFILE on accept: reported, accepting stops, and resumes after
    ACCEPT_RETRY_DELAY; the pending connection is then served."""
    monkeypatch.setattr(sockets_module, "ACCEPT_RETRY_DELAY", 0.05)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reported = loop_errors()
        async with create_server(lambda ws, request: Echo(), "127.0.0.1", 0) as server:
            acceptor = server._acceptor
            assert isinstance(acceptor, Acceptor)
            real = acceptor._listening[0]
            failures = [OSError(errno.EMFILE, "Too many open files")]

            class Exhausted:
                def fileno(self) -> int:
                    return real.fileno()

                def accept(self) -> Any:
                    if failures:
                        raise failures.pop()
                    return real.accept()

            fake = Exhausted()
            acceptor._listening[0] = fake  # type: ignore[call-overload]
            loop.remove_reader(real.fileno())
            loop.add_reader(real.fileno(), acceptor._accept, fake)
            listener = Collect()
            ws = await create_connection(listener, f"ws://127.0.0.1:{server.port}")
            assert [context["exception"].errno for context in reported] == [errno.EMFILE]
            ws.send_binary(b"served after the pause")
            assert await asyncio.wait_for(listener.messages.get(), 5) == b"served after the pause"
            acceptor._listening[0] = real
            ws.close()
            await ws.wait_closed()

    run(main())
